//! End-to-end tests: real Redis Stack, a real Kafka-protocol broker, the
//! components compiled to wasm and run by the host. Run with `make test`.

mod api;
mod bad_input;
mod batch;
mod cache;
mod cache_admin;
mod dashboard;
mod dead_letters;
mod edges;
mod embeddings;
mod failures;
mod faults;
mod fill_backlog;
mod fuzz;
mod judge;
mod kafka_sasl;
mod lanes;
mod limits;
mod members;
mod openai;
mod openapi;
mod otlp;
mod pipeline;
mod produce;
mod providers;
mod redis_acl;
mod redis_tls;
mod redis_trigger;
mod soak;
mod spin_check;
mod task_wait;
mod traces;
mod trust;
mod up;
mod waits;
mod wasm;

pub use aies_tests::{fake_llm, harness};
