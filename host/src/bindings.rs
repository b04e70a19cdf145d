//! All `bindgen!` output of the host, generated in one place from `wit/spin`
//! (Spin's `fermyon:spin@2.0.0` redis, llm and variables interfaces).

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/spin",
        world: "fermyon:spin/host",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/redis.connection": crate::redis::RedisConnection,
        },
    });
}

pub use generated::fermyon::spin::{llm, redis, variables};
pub use generated::Host_ as HostWorld;
