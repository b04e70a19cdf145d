//! Trace context: this request's place in a trace, handed on to the stages
//! it calls, and log lines that carry its trace id.

use aies_contract::TraceParent;
use std::cell::RefCell;

std::thread_local! {
    /// The trace of the request this instance serves (one per request).
    static TRACE: RefCell<Option<TraceParent>> = const { RefCell::new(None) };
}

/// This request's place in a trace: its `traceparent` header (the host's
/// span for the request, when the host exports spans), or a new trace; log
/// lines ([`log!`](crate::log!)) then carry its trace id.
pub fn start_trace(header: Option<&str>) -> TraceParent {
    let trace = match header.and_then(TraceParent::parse) {
        Some(given) => given,
        None => new_span(None),
    };
    TRACE.with(|t| *t.borrow_mut() = Some(trace.clone()));
    trace
}

/// A new span in `header`'s trace (a new trace when there is none).
pub fn new_span(header: Option<&str>) -> TraceParent {
    let (trace, span) = uuid::Uuid::new_v4().as_u64_pair();
    let (more, _) = uuid::Uuid::new_v4().as_u64_pair();
    TraceParent::continue_or_start(header, (u128::from(trace) << 64) | u128::from(more), span)
}

/// The `traceparent` of this request's span, to hand on.
pub fn current_trace() -> Option<String> {
    TRACE.with(|t| t.borrow().as_ref().map(|t| t.header()))
}

/// A log line on stderr, with the trace id of `trace` (a `traceparent`), or
/// of this request's span.
pub fn log_line(trace: Option<&str>, args: std::fmt::Arguments) {
    let id = match trace.and_then(TraceParent::parse) {
        Some(t) => Some(t.trace_id),
        None => TRACE.with(|t| t.borrow().as_ref().map(|t| t.trace_id.clone())),
    };
    match id {
        Some(id) => eprintln!("trace_id={id} {args}"),
        None => eprintln!("{args}"),
    }
}

/// `eprintln!` with this request's trace id.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::log_line(None, format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIVEN: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_request_continues_its_callers_trace() {
        let trace = start_trace(Some(GIVEN));
        assert_eq!(trace.header(), GIVEN);
        assert_eq!(current_trace().as_deref(), Some(GIVEN));
        let span = new_span(Some(GIVEN));
        assert_eq!(span.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(span.parent_id, "00f067aa0ba902b7");
    }

    #[test]
    fn without_a_valid_header_a_trace_starts() {
        let trace = start_trace(Some("junk"));
        assert_eq!(TraceParent::parse(&trace.header()), Some(trace.clone()));
        assert_eq!(current_trace(), Some(trace.header()));
        assert_ne!(new_span(None).trace_id, trace.trace_id);
    }
}
