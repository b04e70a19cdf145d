//! The host's clocks: wall time, and sleeping without blocking the
//! instance.

/// Seconds since the Unix epoch, from the host's wall clock.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Waits without blocking the instance: other futures of the same run (the
/// other events of a batch) go on meanwhile, where a thread sleep would
/// hold them all.
pub fn sleep(wait: std::time::Duration) -> impl std::future::Future<Output = ()> {
    use wasi::clocks::monotonic_clock;
    let deadline = monotonic_clock::now().saturating_add(wait.as_nanos() as u64);
    std::future::poll_fn(move |cx| {
        if monotonic_clock::now() >= deadline {
            return std::task::Poll::Ready(());
        }
        let alarm = monotonic_clock::subscribe_instant(deadline);
        spin_executor::push_waker(alarm, cx.waker().clone());
        std::task::Poll::Pending
    })
}
