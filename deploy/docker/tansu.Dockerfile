# A local stand-in for the Kafka broker, for machines that cannot pull
# apache/kafka (compose.local.yaml): Tansu with SQLite storage, copied
# from the setup's build (deploy/docker/stage.sh puts it in the context).
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN useradd --system --uid 10001 --home-dir /var/lib/tansu aies \
    && mkdir -p /var/lib/tansu && chown aies /var/lib/tansu \
    && command -v sqlite3 >/dev/null
COPY prebuilt/tansu /usr/local/bin/tansu
COPY deploy/docker/tansu.sh /usr/local/bin/tansu.sh
USER aies
EXPOSE 9092
VOLUME /var/lib/tansu
ENTRYPOINT ["tansu.sh"]
