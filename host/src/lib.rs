//! aies-host: runs the Spin application described by `spin.toml` on
//! wasmtime, providing exactly the interfaces our components import:
//! `wasi:http` (incoming and outgoing, with local service chaining),
//! `fermyon:spin/redis`, `fermyon:spin/variables` and `fermyon:spin/llm`
//! embeddings; and Spin's HTTP and Redis triggers.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let config = aies_host::HostConfig::new("spin.toml");
//! let server = aies_host::Server::bind(&config, "127.0.0.1:0".parse()?).await?;
//! println!("listening on {}", server.local_addr());
//! server.run(async { tokio::signal::ctrl_c().await.ok(); }).await
//! # }
//! ```

pub mod allowed_hosts;
pub mod app;
mod bindings;
pub mod check;
mod connections;
pub mod llm;
pub mod manifest;
pub mod metrics;
mod outbound_http;
mod redis;
mod redis_trigger;
pub mod routes;
pub mod server;
mod state;
pub mod telemetry;

pub use app::{App, HostConfig};
pub use server::Server;
