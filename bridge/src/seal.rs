//! The bridge's seals: HMAC-SHA256 under its own key (`AIES_BRIDGE_KEY`),
//! so that what the bridge itself wrote can be told from what any Kafka
//! producer could write.
//!
//! - An event `POST /enqueue` put on the API lane carries [`ENQUEUED`], a
//!   seal of its payload: only such an event may name its task and tenant.
//! - A dead letter's origin (where the event first entered Kafka) is sealed
//!   with the payload ([`ORIGIN_SEAL`]), so a producer cannot name another
//!   event's origin to take over its task.
//! - A replay's marker is sealed with the offset it settles, so a forged
//!   marker cannot hide a dead letter from `replay-dlq`.
//! - A task id derived for an event without one is keyed too: nobody
//!   without the key can predict the id of a future event.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

/// Header of an event that `POST /enqueue` produced: the seal of its
/// payload.
pub const ENQUEUED: &str = "aies-enqueued";
/// Header sealing [`crate::dead_letter::ORIGIN_HEADER`] to the payload.
pub const ORIGIN_SEAL: &str = "aies-origin-seal";
/// Header sealing a replay marker to the offset it settles.
pub const MARKER_SEAL: &str = "aies-replayed-seal";

/// Signs and checks with the bridge's key.
#[derive(Clone)]
pub struct Seal {
    key: Secret,
}

impl Seal {
    pub fn new(key: Secret) -> Self {
        Self { key }
    }

    fn mac(&self, parts: &[&[u8]]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        // Each part with its length first: ("ab", "c") never reads as ("a", "bc").
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The seal of `parts`, as lowercase hex.
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        self.mac(parts)
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `seal` is the seal of `parts` (compared in constant time).
    pub fn verify(&self, parts: &[&[u8]], seal: &str) -> bool {
        let Some(bytes) = unhex(seal) else {
            return false;
        };
        self.mac(parts).verify_slice(&bytes).is_ok()
    }

    /// A task id for the event that first entered Kafka at `origin`: a UUID
    /// made of the keyed hash (version 8, "custom"), stable across
    /// redeliveries and replays, unpredictable without the key.
    pub fn task_id(&self, origin: &str) -> String {
        let digest = self.mac(&[b"task-id", origin.as_bytes()]).finalize();
        let bytes: [u8; 16] = digest.into_bytes()[..16].try_into().expect("32 bytes");
        uuid::Builder::from_custom_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(key: &str) -> Seal {
        Seal::new(key.into())
    }

    #[test]
    fn a_seal_holds_for_its_parts_under_its_key_only() {
        let s = seal("k1");
        let tag = s.sign(&[b"origin", b"datos_crudos/0/7", b"{}"]);
        assert_eq!(tag.len(), 64);
        assert!(s.verify(&[b"origin", b"datos_crudos/0/7", b"{}"], &tag));
        assert!(!s.verify(&[b"origin", b"datos_crudos/0/8", b"{}"], &tag));
        assert!(!seal("k2").verify(&[b"origin", b"datos_crudos/0/7", b"{}"], &tag));
        // Parts are delimited: moving a byte across a boundary changes it.
        assert!(!s.verify(&[b"origin", b"datos_crudos/0/7{", b"}"], &tag));
        for bad in ["", "zz", &tag[..62], &tag.to_uppercase().replace('A', "G")] {
            assert!(
                !s.verify(&[b"origin", b"datos_crudos/0/7", b"{}"], bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn keyed_task_ids_are_stable_distinct_and_not_the_unkeyed_ones() {
        let s = seal("k1");
        let id = s.task_id("datos_crudos/0/7");
        assert_eq!(id, s.task_id("datos_crudos/0/7"));
        assert_ne!(id, s.task_id("datos_crudos/0/8"));
        assert_ne!(id, seal("k2").task_id("datos_crudos/0/7"));
        let unkeyed = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, b"datos_crudos/0/7");
        assert_ne!(id, unkeyed.to_string());
        assert!(aies_contract::valid_task_id(&id));
        assert_eq!(uuid::Uuid::parse_str(&id).unwrap().get_version_num(), 8);
    }
}
