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
//!
//! One module per capability the host gives components, each with its own
//! per-request state and a `host.rs` implementing its WIT host trait (as
//! Spin's factors are laid out): `redis`, [`llm`], `variables`,
//! `outbound_http` (with local service chaining); and `redis_trigger`,
//! which calls components rather than serving them. `state::RequestState`
//! composes the capabilities' states into a store's data; [`app::App`]
//! loads the components and runs them on the engine that `engine` sets up,
//! with the settings of [`config`].

pub mod allowed_hosts;
pub mod app;
mod bindings;
pub mod check;
pub mod config;
mod engine;
pub mod llm;
pub mod manifest;
mod member;
pub mod metrics;
mod outbound_http;
mod redis;
mod redis_trigger;
pub mod routes;
pub mod server;
mod state;
pub mod telemetry;
#[cfg(test)]
mod test_support;
mod variables;

pub use app::App;
pub use config::HostConfig;
pub use server::Server;
