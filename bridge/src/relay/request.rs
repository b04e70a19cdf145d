//! From a Kafka record to its invocation request: the payload parsed and
//! checked, a task id (the event's own, if valid, else one derived from
//! where the event first entered Kafka), a tenant and the trace it belongs
//! to.

use aies_contract::{
    valid_task_id, valid_tenant, InvokeRequest, RawEvent, TraceParent, DEFAULT_TENANT,
    MAX_PROMPT_CHARS,
};
use anyhow::{bail, Context, Result};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;

use crate::dead_letter::origin;
use crate::kafka::{header, TRACEPARENT};

/// A new span for an event: in the trace its producer named (the
/// `traceparent` header, else the payload's field), or in a new trace.
pub(super) fn event_span(message: &OwnedMessage) -> TraceParent {
    let id = uuid::Uuid::new_v4().as_u128();
    let parent = producer_traceparent(message);
    TraceParent::continue_or_start(parent.as_deref(), id, id as u64 ^ (id >> 64) as u64)
}

/// The `traceparent` an event's producer gave: the record header, else the
/// payload's field.
pub(super) fn producer_traceparent(message: &OwnedMessage) -> Option<String> {
    let from_payload = || {
        let payload = message.payload()?;
        let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
        value.get(TRACEPARENT)?.as_str().map(str::to_string)
    };
    header(message, TRACEPARENT)
        .map(str::to_string)
        .filter(|h| TraceParent::parse(h).is_some())
        .or_else(from_payload)
}

pub(super) fn parse(message: &OwnedMessage) -> Result<RawEvent> {
    let payload = message.payload().context("event has no payload")?;
    let event: RawEvent = serde_json::from_slice(payload).context("event is not valid JSON")?;
    let chars = event.prompt.trim().chars().count();
    if chars == 0 || chars > MAX_PROMPT_CHARS {
        bail!("prompt must hold 1 to {MAX_PROMPT_CHARS} characters, has {chars}");
    }
    Ok(event)
}

/// The first invocation of `event`: its own task id and tenant when valid,
/// else a derived task id and the default tenant.
pub(super) fn first_request(
    event: RawEvent,
    message: &OwnedMessage,
    trace: &TraceParent,
) -> InvokeRequest {
    let task_id = event
        .task_id
        .filter(|id| valid_task_id(id))
        .unwrap_or_else(|| derived_task_id(message));
    InvokeRequest {
        task_id,
        prompt: event.prompt,
        tenant: event
            .tenant
            .filter(|t| valid_tenant(t))
            .unwrap_or_else(|| DEFAULT_TENANT.to_string()),
        use_cache: event.use_cache,
        generation: event.generation,
        final_attempt: false,
        traceparent: Some(trace.header()),
    }
}

/// A task id for an event that came without one: derived from where the
/// event first entered Kafka, so a redelivery (or a replay from the
/// dead-letter topic) maps to the same task.
fn derived_task_id(message: &OwnedMessage) -> String {
    uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, origin(message).as_bytes()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::{dead_letter_headers, replay_headers, ORIGIN_HEADER};
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::Timestamp;

    const TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn message(payload: &str, offset: i64) -> OwnedMessage {
        with_headers(payload, offset, None)
    }

    fn with_headers(payload: &str, offset: i64, headers: Option<OwnedHeaders>) -> OwnedMessage {
        OwnedMessage::new(
            Some(payload.as_bytes().to_vec()),
            None,
            "datos_crudos".into(),
            Timestamp::NotAvailable,
            2,
            offset,
            headers,
        )
    }

    fn trace() -> TraceParent {
        TraceParent::parse(TRACE).unwrap()
    }

    #[test]
    fn third_party_events_get_a_stable_task_id() {
        let a = derived_task_id(&message("{}", 7));
        assert_eq!(a, derived_task_id(&message("{}", 7)));
        assert_ne!(a, derived_task_id(&message("{}", 8)));
        assert!(valid_task_id(&a));
    }

    #[test]
    fn a_replayed_event_keeps_the_task_id_of_its_origin() {
        let first = derived_task_id(&message("{}", 7));
        let origin = OwnedHeaders::new().insert(Header {
            key: ORIGIN_HEADER,
            value: Some("datos_crudos/2/7"),
        });
        let replayed = with_headers("{}", 900, Some(origin));
        assert_eq!(derived_task_id(&replayed), first);
    }

    #[test]
    fn a_dead_letter_sent_back_maps_to_the_same_task() {
        let event = message(r#"{"prompt":"hello"}"#, 7);
        let dead = OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "datos_dlq".into(),
            Timestamp::NotAvailable,
            0,
            3,
            Some(dead_letter_headers(&event, "boom")),
        );
        let replayed = with_headers("{}", 900, Some(replay_headers(&dead)));
        assert_eq!(derived_task_id(&replayed), derived_task_id(&event));
    }

    #[test]
    fn unusable_events_are_rejected_with_a_reason() {
        assert!(parse(&message(r#"{"prompt":"hello"}"#, 0)).is_ok());
        let e = parse(&message("not json", 0)).unwrap_err();
        assert!(format!("{e:#}").contains("not valid JSON"));
        let e = parse(&message(r#"{"prompt":"   "}"#, 0)).unwrap_err();
        assert!(format!("{e:#}").contains("prompt"));
        let long = serde_json::json!({ "prompt": "x".repeat(MAX_PROMPT_CHARS + 1) });
        let e = parse(&message(&long.to_string(), 0)).unwrap_err();
        assert!(format!("{e:#}").contains(&format!("has {}", MAX_PROMPT_CHARS + 1)));
        let empty = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, None);
        assert!(format!("{:#}", parse(&empty).unwrap_err()).contains("no payload"));
    }

    #[test]
    fn an_events_own_task_id_and_tenant_are_used_when_valid() {
        let m = message(r#"{"prompt":"hi","task_id":"order-17","tenant":"acme"}"#, 7);
        let r = first_request(parse(&m).unwrap(), &m, &trace());
        assert_eq!(
            (r.task_id.as_str(), r.tenant.as_str()),
            ("order-17", "acme")
        );
        assert_eq!(r.prompt, "hi");
        assert!(!r.final_attempt);
        assert_eq!(r.traceparent, Some(trace().header()));
    }

    #[test]
    fn an_invalid_task_id_or_tenant_is_replaced() {
        let m = message(r#"{"prompt":"hi","task_id":"a b","tenant":"no/slash"}"#, 7);
        let r = first_request(parse(&m).unwrap(), &m, &trace());
        assert_eq!(r.task_id, derived_task_id(&m));
        assert_eq!(r.tenant, DEFAULT_TENANT);
        let m = message(r#"{"prompt":"hi"}"#, 8);
        let r = first_request(parse(&m).unwrap(), &m, &trace());
        assert_eq!(r.task_id, derived_task_id(&m));
        assert_eq!(r.tenant, DEFAULT_TENANT);
    }

    #[test]
    fn the_producers_trace_comes_from_the_header_else_the_payload() {
        let field = format!(r#"{{"prompt":"hi","traceparent":"{TRACE}"}}"#);
        assert_eq!(
            producer_traceparent(&message(&field, 0)).as_deref(),
            Some(TRACE)
        );
        let other = "00-11111111111111111111111111111111-2222222222222222-01";
        let headed = OwnedHeaders::new().insert(Header {
            key: TRACEPARENT,
            value: Some(other),
        });
        let both = with_headers(&field, 0, Some(headed));
        assert_eq!(producer_traceparent(&both).as_deref(), Some(other));
        // A header that is no trace context does not hide the field.
        let bad = OwnedHeaders::new().insert(Header {
            key: TRACEPARENT,
            value: Some("nonsense"),
        });
        let fallback = with_headers(&field, 0, Some(bad));
        assert_eq!(producer_traceparent(&fallback).as_deref(), Some(TRACE));
        assert_eq!(
            producer_traceparent(&message(r#"{"prompt":"hi"}"#, 0)),
            None
        );
        // A new span continues the producer's trace.
        assert_eq!(
            event_span(&both).trace_id,
            "11111111111111111111111111111111"
        );
    }
}
