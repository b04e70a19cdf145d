# The Spin app on the aies-host runner: spin.toml, the five components and
# the offline embedding models and judge. Build from the repository root:
#   docker build -f deploy/docker/app.Dockerfile -t ai-eventstream/app .
# The build stage compiles everything (a Rust image with Python). A context
# that already holds `prebuilt/` (deploy/docker/stage.sh, from `make build`)
# is copied instead: the tests do that, on machines that cannot pull the
# Rust image. One build stage, not one per way: the classic builder builds
# every stage whatever the target.
ARG BASE=debian:bookworm-slim
ARG BUILDER=rust:1.95-bookworm
FROM ${BUILDER} AS build
WORKDIR /src
COPY . .
RUN set -eu; mkdir -p /out/app/.spin; \
    if [ -d prebuilt ]; then \
      cp prebuilt/aies-host /out/; \
      cp -r prebuilt/app/. /out/app/; \
    else \
      apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; \
      rustup target add wasm32-wasip2; \
      cargo build --release --locked -p aies-host; \
      cp target/release/aies-host /out/; \
      (cd components && cargo build --target wasm32-wasip2 --release --locked); \
      mkdir -p /out/app/components/target/wasm32-wasip2/release; \
      cp components/target/wasm32-wasip2/release/*.wasm /out/app/components/target/wasm32-wasip2/release/; \
      cp spin.toml /out/app/; \
      export AIES_CACHE=/cache; . scripts/env.sh; \
      python3 -m venv "$AIES_VENV"; \
      "$AIES_VENV/bin/pip" install -q -r scripts/requirements-tools.txt; \
      scripts/models.sh; \
      scripts/judge.sh; \
      cp -rL .spin/ai-models /out/app/.spin/; \
      for f in model.safetensors tokenizer.json config.json; do \
        ln -sfn "../multilingual-e5-small/$f" "/out/app/.spin/ai-models/aies-judge/$f"; \
      done; \
    fi; \
    chmod -R a+rX /out

FROM ${BASE}
RUN useradd --system --uid 10001 --home-dir /app aies \
    && mkdir -p /app /var/lib/aies/secrets && chown aies /var/lib/aies/secrets
COPY --from=build /out/aies-host /usr/local/bin/aies-host
COPY --from=build /out/app/ /app/
COPY --from=build /src/deploy/docker/entrypoint.sh /src/deploy/docker/probe.sh /usr/local/bin/
USER aies
WORKDIR /app
ENV AIES_LISTEN=0.0.0.0:3000
EXPOSE 3000 9464
HEALTHCHECK --interval=5s --timeout=5s --retries=12 CMD ["probe.sh", "3000", "/health"]
ENTRYPOINT ["entrypoint.sh", "aies-host"]
CMD ["--manifest", "/app/spin.toml", "--metrics-listen", "0.0.0.0:9464"]
