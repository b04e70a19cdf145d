//! The dead-letter topic's header rules, in one place for the relay (which
//! writes dead letters) and `replay-dlq` (which sends them back):
//!
//! 1. Dead-lettering keeps the headers the event came with (a trace, a
//!    replay mark) but the sealed ones ([`SEALED_HEADERS`]), which go along
//!    only when their seal holds: the origin, else the event's own place as
//!    its origin, sealed anew, and the mark of an event `/enqueue` produced.
//!    It adds [`DEAD_LETTER_HEADERS`], replacing those of an event that
//!    dies a second time.
//! 2. Replaying keeps the dead letter's headers but [`DEAD_LETTER_HEADERS`]
//!    and an earlier [`REPLAY_HEADER`], and adds [`REPLAY_HEADER`] naming the
//!    dead letter. The origin survives, so the event keeps its task id.
//! 3. A replayed dead letter is settled by a marker after it, carrying only
//!    [`REPLAYED_HEADER`] and its seal; a marker whose seal does not hold
//!    settles nothing.
//!
//! A producer may write any header: only what the bridge sealed
//! ([`crate::seal`]) is believed.

use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::Message;

use crate::kafka::header;
use crate::seal::{Seal, ENQUEUED, MARKER_SEAL, ORIGIN_SEAL};

/// Header naming where an event first entered Kafka (`topic/partition/offset`);
/// kept through dead-lettering and replay, so a prompt-only event keeps its
/// derived task id. Believed only with its seal ([`ORIGIN_SEAL`]).
pub const ORIGIN_HEADER: &str = "aies-origin";
/// Headers the dead-letter topic adds (replaced when an event dies twice).
pub const DEAD_LETTER_HEADERS: [&str; 4] =
    ["error", "source_topic", "source_partition", "source_offset"];
/// Header of a replayed event: the dead letter it came from
/// (`topic/partition/offset`).
pub const REPLAY_HEADER: &str = "aies-replay-of";
/// Header of a marker: the offset of the dead letter it settles.
pub const REPLAYED_HEADER: &str = "aies-replayed";
/// Headers that carry trust: never copied from a record as they are.
pub const SEALED_HEADERS: [&str; 5] = [
    ORIGIN_HEADER,
    ORIGIN_SEAL,
    ENQUEUED,
    REPLAYED_HEADER,
    MARKER_SEAL,
];

/// A dead letter's reason when it names none.
const NO_REASON: &str = "(no reason)";

/// Where a record is: `topic/partition/offset`.
fn place<M: Message>(message: &M) -> String {
    format!(
        "{}/{}/{}",
        message.topic(),
        message.partition(),
        message.offset()
    )
}

fn payload<M: Message>(message: &M) -> &[u8] {
    message.payload().unwrap_or_default()
}

/// The [`ORIGIN_HEADER`] of `message`, if the bridge sealed it to this
/// payload.
fn sealed_origin<'m, M: Message>(message: &'m M, seal: &Seal) -> Option<&'m str> {
    let origin = header(message, ORIGIN_HEADER)?;
    let tag = header(message, ORIGIN_SEAL)?;
    seal.verify(&origin_parts(origin, payload(message)), tag)
        .then_some(origin)
}

fn origin_parts<'a>(origin: &'a str, payload: &'a [u8]) -> [&'a [u8]; 3] {
    [b"origin", origin.as_bytes(), payload]
}

/// Where an event first entered Kafka: its sealed [`ORIGIN_HEADER`], else
/// its own place (a forged origin is ignored).
pub(crate) fn origin<M: Message>(message: &M, seal: &Seal) -> String {
    sealed_origin(message, seal)
        .map(str::to_string)
        .unwrap_or_else(|| place(message))
}

/// The seal `/enqueue` puts on an event it produces ([`ENQUEUED`]).
pub(crate) fn enqueued_seal(seal: &Seal, payload: &[u8]) -> String {
    seal.sign(&[b"enqueued", payload])
}

/// Whether `/enqueue` produced this event, with this payload: only then may
/// it name its task and tenant.
pub(crate) fn is_enqueued<M: Message>(message: &M, seal: &Seal) -> bool {
    header(message, ENQUEUED).is_some_and(|tag| seal.verify(&[b"enqueued", payload(message)], tag))
}

/// The headers of `message`'s dead letter, which died for `reason`.
pub(crate) fn dead_letter_headers<M: Message>(
    message: &M,
    reason: &str,
    seal: &Seal,
) -> OwnedHeaders {
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let mut headers = OwnedHeaders::new();
    // Headers the event came with (a trace) go along; those that carry
    // trust only when their seal holds, below.
    if let Some(h) = message.headers() {
        for h in h
            .iter()
            .filter(|h| !DEAD_LETTER_HEADERS.contains(&h.key) && !SEALED_HEADERS.contains(&h.key))
        {
            headers = headers.insert(h);
        }
    }
    let origin = origin(message, seal);
    let origin_seal = seal.sign(&origin_parts(&origin, payload(message)));
    let enqueued = is_enqueued(message, seal).then(|| enqueued_seal(seal, payload(message)));
    for (key, value) in [
        (ORIGIN_HEADER, Some(origin.as_str())),
        (ORIGIN_SEAL, Some(origin_seal.as_str())),
        (ENQUEUED, enqueued.as_deref()),
        ("error", Some(reason)),
        ("source_topic", Some(message.topic())),
        ("source_partition", Some(&partition)),
        ("source_offset", Some(&offset)),
    ] {
        if let Some(value) = value {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
    }
    headers
}

/// The headers of a dead letter sent back to the batch lane: without the
/// dead-letter headers, marked as a replay of `letter`.
pub(crate) fn replay_headers<M: Message>(letter: &M) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(h) = letter.headers() {
        for h in h
            .iter()
            .filter(|h| !DEAD_LETTER_HEADERS.contains(&h.key) && h.key != REPLAY_HEADER)
        {
            headers = headers.insert(h);
        }
    }
    headers.insert(Header {
        key: REPLAY_HEADER,
        value: Some(&place(letter)),
    })
}

fn marker_parts<'a>(topic: &'a str, partition: &'a str, offset: &'a str) -> [&'a [u8]; 4] {
    [
        b"replayed",
        topic.as_bytes(),
        partition.as_bytes(),
        offset.as_bytes(),
    ]
}

/// The headers of the marker that settles the dead letter at `offset` of
/// `topic`/`partition`.
pub(crate) fn marker_headers(
    topic: &str,
    partition: i32,
    offset: i64,
    seal: &Seal,
) -> OwnedHeaders {
    let offset = offset.to_string();
    let tag = seal.sign(&marker_parts(topic, &partition.to_string(), &offset));
    OwnedHeaders::new()
        .insert(Header {
            key: REPLAYED_HEADER,
            value: Some(&offset),
        })
        .insert(Header {
            key: MARKER_SEAL,
            value: Some(&tag),
        })
}

/// The offset of the dead letter a marker settles; `None` for a record
/// that is no marker or whose seal does not hold.
pub(crate) fn marked_offset<M: Message>(record: &M, seal: &Seal) -> Option<i64> {
    let offset = header(record, REPLAYED_HEADER)?;
    let tag = header(record, MARKER_SEAL)?;
    let partition = record.partition().to_string();
    seal.verify(&marker_parts(record.topic(), &partition, offset), tag)
        .then(|| offset.parse().ok())
        .flatten()
}

/// Whether a record of the dead-letter topic is a marker (sealed by the
/// bridge), not a dead letter.
pub(crate) fn is_marker<M: Message>(record: &M, seal: &Seal) -> bool {
    marked_offset(record, seal).is_some()
}

/// Why a dead letter died.
pub(crate) fn reason_of<M: Message>(letter: &M) -> &str {
    header(letter, "error").unwrap_or(NO_REASON)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kafka::TRACEPARENT;
    use rdkafka::message::OwnedMessage;
    use rdkafka::Timestamp;

    const TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn seal() -> Seal {
        Seal::new("the bridge's key, 32 characters".into())
    }

    fn record(topic: &str, partition: i32, offset: i64, headers: OwnedHeaders) -> OwnedMessage {
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"key".to_vec()),
            topic.into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            Some(headers),
        )
    }

    /// Every header, in order, as text.
    fn all(headers: &OwnedHeaders) -> Vec<(String, String)> {
        headers
            .iter()
            .map(|h| {
                let value = String::from_utf8(h.value.unwrap_or_default().to_vec()).unwrap();
                (h.key.to_string(), value)
            })
            .collect()
    }

    fn value(headers: &OwnedHeaders, key: &str) -> Option<String> {
        all(headers)
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    fn keys(headers: &OwnedHeaders) -> Vec<String> {
        all(headers).into_iter().map(|(k, _)| k).collect()
    }

    fn traced() -> OwnedHeaders {
        OwnedHeaders::new().insert(Header {
            key: TRACEPARENT,
            value: Some(TRACE),
        })
    }

    fn with(headers: OwnedHeaders, key: &str, value: &str) -> OwnedHeaders {
        headers.insert(Header {
            key,
            value: Some(value),
        })
    }

    #[test]
    fn a_dead_letter_keeps_the_events_headers_and_names_its_sealed_origin_and_reason() {
        let event = record("datos_crudos", 2, 7, traced());
        let headers = dead_letter_headers(&event, "boom", &seal());
        assert_eq!(
            keys(&headers),
            [
                TRACEPARENT,
                ORIGIN_HEADER,
                ORIGIN_SEAL,
                "error",
                "source_topic",
                "source_partition",
                "source_offset"
            ]
        );
        assert_eq!(value(&headers, TRACEPARENT).unwrap(), TRACE);
        assert_eq!(value(&headers, ORIGIN_HEADER).unwrap(), "datos_crudos/2/7");
        assert_eq!(value(&headers, "error").unwrap(), "boom");
        assert_eq!(value(&headers, "source_offset").unwrap(), "7");
        // The letter, read back, names the same origin.
        let letter = record("datos_dlq", 0, 1, headers);
        assert_eq!(origin(&letter, &seal()), "datos_crudos/2/7");
    }

    #[test]
    fn a_forged_origin_is_ignored_and_not_passed_on() {
        // A producer names another event's place, with no seal or a wrong one.
        for forged in [
            with(traced(), ORIGIN_HEADER, "datos_crudos/0/99"),
            with(
                with(traced(), ORIGIN_HEADER, "datos_crudos/0/99"),
                ORIGIN_SEAL,
                &Seal::new("another key".into()).sign(&origin_parts("datos_crudos/0/99", b"{}")),
            ),
        ] {
            let event = record("datos_crudos", 2, 7, forged);
            assert_eq!(origin(&event, &seal()), "datos_crudos/2/7");
            let letter = dead_letter_headers(&event, "boom", &seal());
            assert_eq!(value(&letter, ORIGIN_HEADER).unwrap(), "datos_crudos/2/7");
            let origins = keys(&letter).iter().filter(|k| *k == ORIGIN_HEADER).count();
            assert_eq!(origins, 1);
        }
        // A sealed origin does not carry over to another payload.
        let letter = record(
            "datos_dlq",
            0,
            1,
            dead_letter_headers(&record("datos_crudos", 2, 7, traced()), "boom", &seal()),
        );
        let other = OwnedMessage::new(
            Some(br#"{"prompt":"other"}"#.to_vec()),
            None,
            "datos_crudos".into(),
            Timestamp::NotAvailable,
            0,
            50,
            Some(replay_headers(&letter)),
        );
        assert_eq!(origin(&other, &seal()), "datos_crudos/0/50");
    }

    #[test]
    fn only_enqueued_events_keep_their_enqueued_seal() {
        let tag = enqueued_seal(&seal(), b"{}");
        let event = record("datos_api", 1, 3, with(traced(), ENQUEUED, &tag));
        assert!(is_enqueued(&event, &seal()));
        let letter = dead_letter_headers(&event, "boom", &seal());
        assert_eq!(value(&letter, ENQUEUED).unwrap(), tag);
        let forged = record(
            "datos_crudos",
            1,
            3,
            with(traced(), ENQUEUED, &"0".repeat(64)),
        );
        assert!(!is_enqueued(&forged, &seal()));
        assert_eq!(
            value(&dead_letter_headers(&forged, "boom", &seal()), ENQUEUED),
            None
        );
    }

    #[test]
    fn an_event_that_dies_twice_keeps_its_origin_and_gets_new_dead_letter_headers() {
        let first = dead_letter_headers(&record("datos_crudos", 2, 7, traced()), "first", &seal());
        let again = record("datos_crudos", 0, 900, first);
        let headers = dead_letter_headers(&again, "second", &seal());
        let listed = keys(&headers);
        let count = |key: &str| listed.iter().filter(|k| *k == key).count();
        for key in DEAD_LETTER_HEADERS
            .into_iter()
            .chain([ORIGIN_HEADER, ORIGIN_SEAL])
        {
            assert_eq!(count(key), 1, "{key} in {listed:?}");
        }
        assert_eq!(value(&headers, ORIGIN_HEADER).unwrap(), "datos_crudos/2/7");
        assert_eq!(value(&headers, "error").unwrap(), "second");
        assert_eq!(value(&headers, "source_offset").unwrap(), "900");
    }

    #[test]
    fn a_replay_drops_the_dead_letter_headers_and_names_the_dead_letter() {
        let dead = dead_letter_headers(&record("datos_crudos", 2, 7, traced()), "boom", &seal());
        let letter = record("datos_dlq", 1, 40, dead);
        assert_eq!(reason_of(&letter), "boom");
        let replayed = replay_headers(&letter);
        assert_eq!(
            keys(&replayed),
            [TRACEPARENT, ORIGIN_HEADER, ORIGIN_SEAL, REPLAY_HEADER]
        );
        assert_eq!(value(&replayed, REPLAY_HEADER).unwrap(), "datos_dlq/1/40");
    }

    #[test]
    fn a_round_trip_through_the_dead_letter_topic_keeps_the_origin() {
        let event = record("datos_crudos", 2, 7, traced());
        let letter = record(
            "datos_dlq",
            1,
            40,
            dead_letter_headers(&event, "first", &seal()),
        );
        let replayed = record("datos_crudos", 0, 900, replay_headers(&letter));
        assert_eq!(origin(&replayed, &seal()), origin(&event, &seal()));
        // It dies again and is replayed again: one replay mark, the newest.
        let letter = record(
            "datos_dlq",
            1,
            41,
            dead_letter_headers(&replayed, "second", &seal()),
        );
        assert_eq!(reason_of(&letter), "second");
        let again = replay_headers(&letter);
        let marks: Vec<_> = all(&again)
            .into_iter()
            .filter(|(k, _)| k == REPLAY_HEADER)
            .collect();
        assert_eq!(marks.len(), 1, "{marks:?}");
        assert_eq!(marks[0].1, "datos_dlq/1/41");
        let replayed = record("datos_crudos", 1, 5, again);
        assert_eq!(origin(&replayed, &seal()), "datos_crudos/2/7");
    }

    #[test]
    fn only_sealed_markers_settle_an_offset() {
        let marker = record(
            "datos_dlq",
            1,
            42,
            marker_headers("datos_dlq", 1, 40, &seal()),
        );
        assert!(is_marker(&marker, &seal()));
        assert_eq!(marked_offset(&marker, &seal()), Some(40));
        // The same marker in another partition, or a bare header, settles nothing.
        let moved = record(
            "datos_dlq",
            2,
            42,
            marker_headers("datos_dlq", 1, 40, &seal()),
        );
        assert_eq!(marked_offset(&moved, &seal()), None);
        let bare = record("datos_dlq", 1, 43, with(traced(), REPLAYED_HEADER, "40"));
        assert!(!is_marker(&bare, &seal()));
        let plain = record("datos_dlq", 1, 43, traced());
        assert!(!is_marker(&plain, &seal()));
        assert_eq!(reason_of(&plain), NO_REASON);
    }

    #[test]
    fn an_event_without_an_origin_header_is_its_own_origin() {
        assert_eq!(
            origin(&record("datos_api", 3, 11, traced()), &seal()),
            "datos_api/3/11"
        );
    }
}
