//! The wasm engine, made once per host: epoch interruption (request
//! deadlines), the pooling allocator, the compilation cache; and the one
//! epoch ticker that advances it, never one per request.

use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// How often the epoch advances; request deadlines are counted in ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The engine every component is compiled for and run on.
pub fn new(max_memory_bytes: usize) -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    // The components are WASI 0.2 (no component-model async): without the
    // concurrent-execution state every store and host call bookkept.
    config.concurrency_support(false);
    let mut pool = PoolingAllocationConfig::default();
    pool.max_memory_size(max_memory_bytes);
    // Requests in flight (most wait on the network: an LLM answering in
    // 300 ms) each hold an instance, and a chained call one more.
    pool.total_component_instances(2000);
    pool.total_core_instances(6000);
    pool.total_memories(4000);
    pool.total_tables(4000);
    pool.total_stacks(2000);
    // Resetting a slot's memory was the largest single cost of a short
    // request (perf: 14% memset plus TLB shootdowns from madvise). With the
    // PAGEMAP_SCAN ioctl (Linux 6.7+) only the pages a request dirtied are
    // reset, and the first 256 KiB stay resident; decommits are batched.
    // No-op requests: 0.09-0.10x -> 0.17-0.23x of native hyper.
    pool.decommit_batch_size(64);
    pool.pagemap_scan(wasmtime::Enabled::Auto);
    pool.linear_memory_keep_resident(256 << 10);
    pool.table_keep_resident(64 << 10);

    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match wasmtime::Cache::from_file(None) {
        Ok(cache) => {
            config.cache(Some(cache));
        }
        Err(e) => tracing::warn!("compilation cache off: {e:#}"),
    }
    Engine::new(&config).map_err(|e| anyhow::anyhow!("creating the wasm engine: {e}"))
}

/// Advances an engine's epoch every [`EPOCH_TICK`] on a thread of its own,
/// until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let engine = engine.clone();
        let stopped = stop.clone();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while !stopped.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(Self { stop })
    }

    /// The epoch deadline, in ticks, of a run that may take `timeout`.
    pub fn ticks(timeout: Duration) -> u64 {
        (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
