//! End-to-end tests: real Redis Stack, a real Kafka-protocol broker, the
//! components compiled to wasm and run by the host. Run with `make test`.

mod bad_input;
mod batch;
mod embeddings;
mod fake_llm;
mod harness;
mod pipeline;
mod wasm;
