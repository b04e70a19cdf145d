//! The dead-letter topic's header rules, in one place for the relay (which
//! writes dead letters) and `replay-dlq` (which sends them back):
//!
//! 1. Dead-lettering keeps the headers the event came with (a trace, its
//!    origin, a replay mark), adds [`ORIGIN_HEADER`] when the event has
//!    none, and adds [`DEAD_LETTER_HEADERS`], replacing those of an event
//!    that dies a second time.
//! 2. Replaying keeps the dead letter's headers but [`DEAD_LETTER_HEADERS`]
//!    and an earlier [`REPLAY_HEADER`], and adds [`REPLAY_HEADER`] naming the
//!    dead letter. The origin survives, so the event keeps its task id.
//! 3. A replayed dead letter is settled by a marker after it, carrying only
//!    [`REPLAYED_HEADER`].

use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::Message;

use crate::kafka::header;

/// Header naming where an event first entered Kafka (`topic/partition/offset`);
/// kept through dead-lettering and replay, so a prompt-only event keeps its
/// derived task id.
pub const ORIGIN_HEADER: &str = "aies-origin";
/// Headers the dead-letter topic adds (replaced when an event dies twice).
pub const DEAD_LETTER_HEADERS: [&str; 4] =
    ["error", "source_topic", "source_partition", "source_offset"];
/// Header of a replayed event: the dead letter it came from
/// (`topic/partition/offset`).
pub const REPLAY_HEADER: &str = "aies-replay-of";
/// Header of a marker: the offset of the dead letter it settles.
pub const REPLAYED_HEADER: &str = "aies-replayed";

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

/// Where an event first entered Kafka: its [`ORIGIN_HEADER`], else its own
/// place.
pub(crate) fn origin<M: Message>(message: &M) -> String {
    header(message, ORIGIN_HEADER)
        .map(str::to_string)
        .unwrap_or_else(|| place(message))
}

/// The headers of `message`'s dead letter, which died for `reason`.
pub(crate) fn dead_letter_headers<M: Message>(message: &M, reason: &str) -> OwnedHeaders {
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let mut headers = OwnedHeaders::new();
    // Headers the event came with (a trace, its origin) go along.
    if let Some(h) = message.headers() {
        for h in h.iter().filter(|h| !DEAD_LETTER_HEADERS.contains(&h.key)) {
            headers = headers.insert(h);
        }
    }
    if header(message, ORIGIN_HEADER).is_none() {
        headers = headers.insert(Header {
            key: ORIGIN_HEADER,
            value: Some(&place(message)),
        });
    }
    for (key, value) in [
        ("error", reason),
        ("source_topic", message.topic()),
        ("source_partition", &partition),
        ("source_offset", &offset),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
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

/// The headers of the marker that settles the dead letter at `offset`.
pub(crate) fn marker_headers(offset: i64) -> OwnedHeaders {
    OwnedHeaders::new().insert(Header {
        key: REPLAYED_HEADER,
        value: Some(&offset.to_string()),
    })
}

/// Whether a record of the dead-letter topic is a marker, not a dead letter.
pub(crate) fn is_marker<M: Message>(record: &M) -> bool {
    header(record, REPLAYED_HEADER).is_some()
}

/// The offset of the dead letter a marker settles.
pub(crate) fn marked_offset<M: Message>(record: &M) -> Option<i64> {
    header(record, REPLAYED_HEADER).and_then(|v| v.parse().ok())
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

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn traced() -> OwnedHeaders {
        OwnedHeaders::new().insert(Header {
            key: TRACEPARENT,
            value: Some(TRACE),
        })
    }

    #[test]
    fn a_dead_letter_keeps_the_events_headers_and_names_its_origin_and_reason() {
        let event = record("datos_crudos", 2, 7, traced());
        let headers = dead_letter_headers(&event, "boom");
        assert_eq!(
            all(&headers),
            pairs(&[
                (TRACEPARENT, TRACE),
                (ORIGIN_HEADER, "datos_crudos/2/7"),
                ("error", "boom"),
                ("source_topic", "datos_crudos"),
                ("source_partition", "2"),
                ("source_offset", "7"),
            ])
        );
    }

    #[test]
    fn an_event_that_dies_twice_keeps_its_origin_and_gets_new_dead_letter_headers() {
        let first = dead_letter_headers(&record("datos_crudos", 2, 7, traced()), "first");
        let again = record("datos_crudos", 0, 900, first);
        let headers = all(&dead_letter_headers(&again, "second"));
        let count = |key: &str| headers.iter().filter(|(k, _)| k == key).count();
        for key in DEAD_LETTER_HEADERS.into_iter().chain([ORIGIN_HEADER]) {
            assert_eq!(count(key), 1, "{key} in {headers:?}");
        }
        let value = |key: &str| headers.iter().find(|(k, _)| k == key).unwrap().1.clone();
        assert_eq!(value(ORIGIN_HEADER), "datos_crudos/2/7");
        assert_eq!(value("error"), "second");
        assert_eq!(value("source_offset"), "900");
    }

    #[test]
    fn a_replay_drops_the_dead_letter_headers_and_names_the_dead_letter() {
        let dead = dead_letter_headers(&record("datos_crudos", 2, 7, traced()), "boom");
        let letter = record("datos_dlq", 1, 40, dead);
        assert_eq!(reason_of(&letter), "boom");
        assert_eq!(
            all(&replay_headers(&letter)),
            pairs(&[
                (TRACEPARENT, TRACE),
                (ORIGIN_HEADER, "datos_crudos/2/7"),
                (REPLAY_HEADER, "datos_dlq/1/40"),
            ])
        );
    }

    #[test]
    fn a_round_trip_through_the_dead_letter_topic_keeps_the_origin() {
        let event = record("datos_crudos", 2, 7, traced());
        let letter = record("datos_dlq", 1, 40, dead_letter_headers(&event, "first"));
        let replayed = record("datos_crudos", 0, 900, replay_headers(&letter));
        assert_eq!(origin(&replayed), origin(&event));
        // It dies again and is replayed again: one replay mark, the newest.
        let letter = record("datos_dlq", 1, 41, dead_letter_headers(&replayed, "second"));
        assert_eq!(reason_of(&letter), "second");
        let again = replay_headers(&letter);
        let listed = all(&again);
        let marks: Vec<_> = listed.iter().filter(|(k, _)| k == REPLAY_HEADER).collect();
        assert_eq!(marks.len(), 1, "{listed:?}");
        assert_eq!(marks[0].1, "datos_dlq/1/41");
        let replayed = record("datos_crudos", 1, 5, again);
        assert_eq!(origin(&replayed), "datos_crudos/2/7");
    }

    #[test]
    fn markers_settle_one_offset_and_letters_without_a_reason_say_so() {
        let marker = record("datos_dlq", 1, 42, marker_headers(40));
        assert!(is_marker(&marker));
        assert_eq!(marked_offset(&marker), Some(40));
        let plain = record("datos_dlq", 1, 43, traced());
        assert!(!is_marker(&plain));
        assert_eq!(marked_offset(&plain), None);
        assert_eq!(reason_of(&plain), NO_REASON);
    }

    #[test]
    fn an_event_without_an_origin_header_is_its_own_origin() {
        assert_eq!(
            origin(&record("datos_api", 3, 11, traced())),
            "datos_api/3/11"
        );
    }
}
