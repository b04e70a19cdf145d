//! One place sets the tracing subscriber up: `RUST_LOG` filters, default info.

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}
