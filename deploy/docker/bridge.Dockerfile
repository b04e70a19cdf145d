# The Kafka bridge (aies-bridge). Build from the repository root:
#   docker build -f deploy/docker/bridge.Dockerfile -t ai-eventstream/bridge .
# As app.Dockerfile: compiled here, or copied from a context's `prebuilt/`.
ARG BASE=debian:bookworm-slim
ARG BUILDER=rust:1.95-bookworm
FROM ${BUILDER} AS build
WORKDIR /src
COPY . .
RUN set -eu; mkdir -p /out; \
    if [ -d prebuilt ]; then \
      cp prebuilt/aies-bridge /out/; \
    else \
      cargo build --release --locked -p aies-bridge; \
      cp target/release/aies-bridge /out/; \
    fi; \
    chmod -R a+rX /out

FROM ${BASE}
# librdkafka's TLS and SCRAM link OpenSSL 3, its OAUTHBEARER OIDC libcurl
# (a slim Debian lacks both; the local base image has them).
RUN if ! ls /usr/lib/*/libssl.so.3 /usr/lib/*/libcurl.so.4 >/dev/null 2>&1; then \
      apt-get update -qq && apt-get install -y -qq --no-install-recommends libssl3 libcurl4 ca-certificates >/dev/null \
      && rm -rf /var/lib/apt/lists/*; \
    fi
RUN useradd --system --uid 10001 --no-create-home aies \
    && mkdir -p /var/lib/aies/secrets && chown aies /var/lib/aies/secrets
COPY --from=build /out/aies-bridge /usr/local/bin/aies-bridge
COPY --from=build /src/deploy/docker/entrypoint.sh /src/deploy/docker/probe.sh /usr/local/bin/
USER aies
ENV AIES_BRIDGE_LISTEN=0.0.0.0:3100
EXPOSE 3100
HEALTHCHECK --interval=5s --timeout=5s --retries=12 CMD ["probe.sh", "3100", "/health"]
# The bridge drains its events in flight on SIGTERM (up to 30 s, then the
# final commit): compose's stop_grace_period and Kubernetes'
# terminationGracePeriodSeconds must allow for it.
STOPSIGNAL SIGTERM
ENTRYPOINT ["entrypoint.sh", "aies-bridge"]
