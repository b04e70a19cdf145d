# AI-EventStream. `make setup` once, then `make up` or `make test`.
SHELL := /bin/bash
ENV := . scripts/env.sh

.PHONY: setup build components native judge up test test-cluster check-deploy images bench fmt clippy clean replay-dlq produce cache-eval spin-check

setup:
	bash scripts/setup.sh

components:
	cd components && CARGO_TARGET_DIR=target cargo build --target wasm32-wasip2 --release --locked

native:
	cargo build --release --locked -p aies-host -p aies-bridge -p aies-up

build: components native

# The cache's near-duplicate judge, trained on the tuning split (once; kept
# under ~/.cache/ai-eventstream, keyed by what it is made from) and linked
# into .spin/ai-models/aies-judge/.
judge:
	bash scripts/judge.sh

up: judge
	bash scripts/up.sh

# Tests start their own Redis Stack and Tansu brokers on free ports; the fault
# tests run aies-host, aies-bridge and aies-up (built by `native`) as processes
# to kill them. The components' pure logic is unit-tested natively first.
test: check-deploy judge components native
	cd components && CARGO_TARGET_DIR=target cargo test --release --locked --lib \
	  --target "$$(rustc -vV | sed -n 's/^host: //p')"
	$(ENV) && cargo test --release --locked --workspace -- --test-threads=4 $(ARGS)

# The Kubernetes and Spin deployment files (deploy/), checked offline against
# the Kubernetes schemas and the vendored SpinApp CRD (scripts/check-deploy.py).
check-deploy:
	bash scripts/check-deploy.sh

# Container images where none can be pulled (the development and CI
# machines): a local Debian base from debootstrap, build contexts holding
# this machine's build, then compose's build with compose.local.yaml.
# Users with a registry run `docker compose up -d --build` instead.
images: build judge
	bash deploy/docker/base-image.sh
	bash deploy/docker/stage.sh
	docker-compose -f compose.yaml -f compose.local.yaml build --quiet

# Three bridges and two app instances as containers, with faults
# (tests/cluster/main.rs): one cluster per test, so one test at a time.
test-cluster: images
	$(ENV) && cargo test --release --locked -p aies-tests --test cluster -- --test-threads=1 --nocapture $(ARGS)

# Would Spin 4 start spin.toml? Spin's manifest schema, its rules and each
# trigger's start checks (variables, templates, sources, exports, models).
spin-check: build judge
	"$${CARGO_TARGET_DIR:-target}/release/aies-host" check -f spin.toml

# Dead letters back to datos_crudos: ARGS="--dry-run", "--reason 401", "--older-than 1h".
# The bridge's key (which seals the replay markers) is the one `make up` keeps.
replay-dlq: native
	AIES_BRIDGE_KEY="$${AIES_BRIDGE_KEY:-$$(cat .data/bridge-key 2>/dev/null)}" \
	  "$${CARGO_TARGET_DIR:-target}/release/aies-bridge" replay-dlq $(ARGS)

# The batch flow: ARGS="--count 5000", "--keys 100", "--file prompts.txt".
produce: native
	"$${CARGO_TARGET_DIR:-target}/release/aies-bridge" produce $(ARGS)

# The cache's threshold and guard on the tuning and held-out pairs, with each
# embedding model at its thresholds from crates/cache-guard/thresholds.txt
# (ARGS for both runs, e.g. --threshold 0.8 --reworded 0.85).
cache-eval: judge
	cargo build --release --locked -p aies-tests --bin aies-cache-eval
	"$${CARGO_TARGET_DIR:-target}/release/aies-cache-eval" $(ARGS)
	"$${CARGO_TARGET_DIR:-target}/release/aies-cache-eval" --model-dir .spin/ai-models/multilingual-e5-small \
	  --prefix "query: " $(ARGS)

bench: build judge
	$(ENV) && cargo run --release --locked -p aies-tests --bin aies-bench

fmt:
	cargo fmt --all && cd components && cargo fmt --all

clippy:
	cargo clippy --release --workspace --all-targets -- -D warnings
	cd components && cargo clippy --release -- -D warnings

clean:
	cargo clean && cd components && cargo clean
