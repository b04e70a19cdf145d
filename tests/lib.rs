//! Shared by the end-to-end tests (`e2e/`) and the benchmark (`bench.rs`):
//! starting real Redis Stack and Tansu servers, the host and the bridge,
//! the fake LLM provider, and the benchmark's load generator.

pub mod cluster;
pub mod fake_llm;
pub mod harness;
pub mod load;
pub mod pairs;
pub mod stack;
