//! The host's log filter; `aies_telemetry` sets logging and traces up.

/// Info, without the runtime's own chatter, unless `RUST_LOG` says otherwise.
pub const DEFAULT_FILTER: &str = "info,wasmtime=warn,cranelift=warn";
