# AI-EventStream. `make setup` once, then `make up` or `make test`.
SHELL := /bin/bash
ENV := . scripts/env.sh

.PHONY: setup build components native up test bench fmt clippy clean

setup:
	bash scripts/setup.sh

components:
	cd components && CARGO_TARGET_DIR=target cargo build --target wasm32-wasip2 --release --locked

native:
	cargo build --release --locked -p aies-host -p aies-bridge

build: components native

up:
	bash scripts/up.sh

# Tests start their own Redis Stack and Tansu broker on free ports; one runs
# the aies-bridge binary (built by `native`) as a process to SIGKILL it.
test: components native
	$(ENV) && cargo test --release --locked --workspace -- --test-threads=4 $(ARGS)

bench: build
	$(ENV) && cargo run --release --locked -p aies-tests --bin aies-bench

fmt:
	cargo fmt --all && cd components && cargo fmt --all

clippy:
	cargo clippy --release --workspace --all-targets -- -D warnings
	cd components && cargo clippy --release -- -D warnings

clean:
	cargo clean && cd components && cargo clean
