//! All `bindgen!` output of the host, generated in one place from `wit/spin`
//! (Spin's `fermyon:spin@2.0.0` redis, llm and variables interfaces, and the
//! unversioned `fermyon:spin/inbound-redis` export of Redis components).

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/spin",
        world: "fermyon:spin/host@2.0.0",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/redis.connection": crate::redis::RedisConnection,
        },
    });
}

mod trigger {
    wasmtime::component::bindgen!({
        path: "../wit/spin",
        world: "fermyon:spin/redis-trigger@2.0.0",
        exports: { default: async },
    });
}

pub use generated::fermyon::spin2_0_0::{llm, redis, variables};
pub use generated::Host_ as HostWorld;
pub use trigger::RedisTriggerPre;
