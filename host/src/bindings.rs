//! All `bindgen!` output of the host, generated in one place from `wit/spin`
//! (Spin's `fermyon:spin@2.0.0` redis, llm and variables interfaces, and the
//! unversioned `fermyon:spin/inbound-redis` export of Redis components).
//!
//! The redis `connection` resource keeps its generated type: the redis
//! capability holds the connections in a table of its own, by the handle's
//! rep (as Spin's outbound-redis factor does), so these bindings name no
//! type of the host's.

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit/spin",
        world: "fermyon:spin/host@2.0.0",
        imports: { default: async | trappable },
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
pub use trigger::RedisTriggerPre;
