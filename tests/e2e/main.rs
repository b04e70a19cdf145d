//! End-to-end tests: real Redis Stack, a real Kafka-protocol broker, the
//! components compiled to wasm and run by the host. Run with `make test`.

mod bad_input;
mod batch;
mod embeddings;
mod failures;
mod limits;
mod pipeline;
mod providers;
mod wasm;

pub use aies_tests::{fake_llm, harness};
