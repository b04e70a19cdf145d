//! From a Kafka record to its invocation request: the payload parsed and
//! checked, a task id, a tenant and the trace it belongs to.
//!
//! Who is believed ([`Trust`]): an event `/enqueue` sealed (an API task)
//! names its own task id and tenant. Any other event comes from a producer
//! nobody authenticated: its tenant is the batch lane's (`--batch-tenant`)
//! unless the operator trusts producers' tenants, and the task id it names
//! lives in that tenant's namespace (`<tenant>:<id>`), so it can never be
//! an API task's or another tenant's. An event that names none gets an id
//! keyed with the bridge's secret from where it first entered Kafka:
//! stable across redeliveries and replays, unpredictable to producers.

use aies_contract::{
    valid_task_id, valid_tenant, InvokeRequest, RawEvent, TraceParent, MAX_PROMPT_CHARS,
};
use anyhow::{bail, Context, Result};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;

use crate::dead_letter::{is_enqueued, origin};
use crate::kafka::{header, TRACEPARENT};
use crate::seal::Seal;
use crate::BridgeConfig;

/// What the relay believes of an event's claims.
#[derive(Clone)]
pub(super) struct Trust {
    pub seal: Seal,
    /// The tenant of events that are not the API's.
    pub batch_tenant: String,
    /// Whether such events' own `tenant` is believed.
    pub producer_tenants: bool,
}

impl Trust {
    pub fn new(config: &BridgeConfig) -> Self {
        Self {
            seal: config.seal(),
            batch_tenant: config.batch_tenant.clone(),
            producer_tenants: config.trust_producer_tenants,
        }
    }
}

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

/// The first invocation of `event`, with the task id and tenant `trust`
/// allows it (see the module's docs).
pub(super) fn first_request(
    event: RawEvent,
    message: &OwnedMessage,
    trace: &TraceParent,
    trust: &Trust,
) -> InvokeRequest {
    let api = is_enqueued(message, &trust.seal);
    let claimed = event.tenant.filter(|t| valid_tenant(t));
    let tenant = match claimed {
        Some(t) if api || trust.producer_tenants => t,
        _ if api => aies_contract::DEFAULT_TENANT.to_string(),
        _ => trust.batch_tenant.clone(),
    };
    let own_id = match event.task_id {
        Some(id) if api => Some(id),
        Some(id) => Some(format!("{tenant}:{id}")),
        None => None,
    };
    let task_id = own_id
        .filter(|id| valid_task_id(id))
        .unwrap_or_else(|| trust.seal.task_id(&origin(message, &trust.seal)));
    InvokeRequest {
        task_id,
        prompt: event.prompt,
        tenant,
        use_cache: event.use_cache,
        generation: event.generation,
        final_attempt: false,
        traceparent: Some(trace.header()),
        api,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::{dead_letter_headers, enqueued_seal, replay_headers, ORIGIN_HEADER};
    use crate::seal::ENQUEUED;
    use aies_contract::DEFAULT_TENANT;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::Timestamp;

    const TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn trust() -> Trust {
        Trust {
            seal: Seal::new("the bridge's key, 32 characters".into()),
            batch_tenant: "partners".into(),
            producer_tenants: false,
        }
    }

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

    /// An event as `/enqueue` writes it: sealed.
    fn enqueued(payload: &str) -> OwnedMessage {
        let seal = enqueued_seal(&trust().seal, payload.as_bytes());
        let headers = OwnedHeaders::new().insert(Header {
            key: ENQUEUED,
            value: Some(&seal),
        });
        with_headers(payload, 3, Some(headers))
    }

    fn request(m: &OwnedMessage, trust: &Trust) -> InvokeRequest {
        first_request(parse(m).unwrap(), m, &trace(), trust)
    }

    fn trace() -> TraceParent {
        TraceParent::parse(TRACE).unwrap()
    }

    #[test]
    fn an_event_without_an_id_gets_a_keyed_stable_one() {
        let a = request(&message(r#"{"prompt":"hi"}"#, 7), &trust());
        assert_eq!(
            a.task_id,
            request(&message(r#"{"prompt":"hi"}"#, 7), &trust()).task_id
        );
        assert_ne!(
            a.task_id,
            request(&message(r#"{"prompt":"hi"}"#, 8), &trust()).task_id
        );
        assert_eq!(a.task_id, trust().seal.task_id("datos_crudos/2/7"));
        // Not what anyone could compute without the key (the old UUIDv5).
        let unkeyed = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"datos_crudos/2/7");
        assert_ne!(a.task_id, unkeyed.to_string());
        assert_eq!(a.tenant, "partners");
    }

    #[test]
    fn a_replayed_event_keeps_the_task_id_of_its_origin() {
        let event = message(r#"{"prompt":"hello"}"#, 7);
        let first = request(&event, &trust()).task_id;
        let dead = OwnedMessage::new(
            Some(br#"{"prompt":"hello"}"#.to_vec()),
            None,
            "datos_dlq".into(),
            Timestamp::NotAvailable,
            0,
            3,
            Some(dead_letter_headers(&event, "boom", &trust().seal)),
        );
        let replayed = with_headers(r#"{"prompt":"hello"}"#, 900, Some(replay_headers(&dead)));
        assert_eq!(request(&replayed, &trust()).task_id, first);
    }

    #[test]
    fn a_forged_origin_does_not_take_another_events_id() {
        let victim = request(&message(r#"{"prompt":"real question"}"#, 8), &trust());
        let forged = OwnedHeaders::new().insert(Header {
            key: ORIGIN_HEADER,
            value: Some("datos_crudos/2/8"),
        });
        let attacker = with_headers(r#"{"prompt":"ATTACKER"}"#, 7, Some(forged));
        assert_ne!(request(&attacker, &trust()).task_id, victim.task_id);
    }

    #[test]
    fn only_an_enqueued_event_names_its_task_and_tenant() {
        let payload =
            r#"{"prompt":"hi","task_id":"2b0c6a3e-1d2f-4c55-9a77-0e6f5b8f4a10","tenant":"acme"}"#;
        let api = request(&enqueued(payload), &trust());
        assert_eq!(
            (api.task_id.as_str(), api.tenant.as_str()),
            ("2b0c6a3e-1d2f-4c55-9a77-0e6f5b8f4a10", "acme")
        );
        assert_eq!(api.prompt, "hi");
        assert!(!api.final_attempt);
        assert!(api.api, "its cache fill goes first");
        assert_eq!(api.traceparent, Some(trace().header()));
        // The same payload from any producer: its id in the batch tenant's
        // namespace, the batch tenant.
        let batch = request(&message(payload, 7), &trust());
        assert_eq!(
            (batch.task_id.as_str(), batch.tenant.as_str()),
            ("partners:2b0c6a3e-1d2f-4c55-9a77-0e6f5b8f4a10", "partners")
        );
        assert!(!batch.api);
        // A seal copied onto another payload does not hold.
        let seal = enqueued_seal(&trust().seal, payload.as_bytes());
        let copied = OwnedMessage::new(
            Some(
                br#"{"prompt":"ATTACKER","task_id":"2b0c6a3e-1d2f-4c55-9a77-0e6f5b8f4a10"}"#
                    .to_vec(),
            ),
            None,
            "datos_api".into(),
            Timestamp::NotAvailable,
            0,
            1,
            Some(OwnedHeaders::new().insert(Header {
                key: ENQUEUED,
                value: Some(&seal),
            })),
        );
        assert_eq!(
            request(&copied, &trust()).task_id,
            "partners:2b0c6a3e-1d2f-4c55-9a77-0e6f5b8f4a10"
        );
    }

    #[test]
    fn producers_tenants_are_believed_only_when_the_operator_says_so() {
        let m = message(r#"{"prompt":"hi","task_id":"order-17","tenant":"acme"}"#, 7);
        let r = request(&m, &trust());
        assert_eq!(
            (r.task_id.as_str(), r.tenant.as_str()),
            ("partners:order-17", "partners")
        );
        let trusting = Trust {
            producer_tenants: true,
            ..trust()
        };
        let r = request(&m, &trusting);
        assert_eq!(
            (r.task_id.as_str(), r.tenant.as_str()),
            ("acme:order-17", "acme")
        );
        // Two tenants' producers with one id: two tasks.
        let other = message(
            r#"{"prompt":"hi","task_id":"order-17","tenant":"globex"}"#,
            8,
        );
        assert_eq!(request(&other, &trusting).task_id, "globex:order-17");
    }

    #[test]
    fn an_invalid_task_id_or_tenant_is_replaced() {
        let m = message(r#"{"prompt":"hi","task_id":"a b","tenant":"no/slash"}"#, 7);
        let trusting = Trust {
            producer_tenants: true,
            ..trust()
        };
        let r = request(&m, &trusting);
        assert_eq!(r.task_id, trust().seal.task_id("datos_crudos/2/7"));
        assert_eq!(r.tenant, "partners");
        // Too long once namespaced: replaced too.
        let long = format!(r#"{{"prompt":"hi","task_id":"{}"}}"#, "x".repeat(120));
        let r = request(&message(&long, 9), &trust());
        assert_eq!(r.task_id, trust().seal.task_id("datos_crudos/2/9"));
        // An enqueued event without a tenant is the default tenant's.
        let r = request(&enqueued(r#"{"prompt":"hi","task_id":"t-1"}"#), &trust());
        assert_eq!(
            (r.task_id.as_str(), r.tenant.as_str()),
            ("t-1", DEFAULT_TENANT)
        );
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
