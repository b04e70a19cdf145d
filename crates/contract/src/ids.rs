//! What a tenant, task and scope id may be: they go into Redis keys, Kafka
//! keys and RediSearch TAG queries, so each is bounded and plain.

/// Tenant used when a request names none.
pub const DEFAULT_TENANT: &str = "default";

/// A tenant id is a short tag: letters, digits, `-` and `_`. Keeping it to
/// these characters lets it go into a RediSearch TAG query without escaping.
pub fn valid_tenant(tenant: &str) -> bool {
    !tenant.is_empty()
        && tenant.len() <= 64
        && tenant
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A task id is produced by us (a UUID) or by a third-party producer; it is
/// used in Redis keys and Kafka keys, so it is bounded and plain.
pub fn valid_task_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// A cache scope id is hex (the guest library's `scope_id`): safe in keys,
/// `SCAN` patterns and TAG queries.
pub fn valid_scope(scope: &str) -> bool {
    !scope.is_empty() && scope.len() <= 64 && scope.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_and_task_ids_are_plain() {
        assert!(valid_tenant("acme_1-x"));
        assert!(!valid_tenant("a}b"));
        assert!(!valid_tenant(""));
        assert!(valid_task_id("0b6c-11:x.y"));
        assert!(!valid_task_id("a b"));
    }

    #[test]
    fn ids_are_bounded() {
        assert!(valid_tenant(&"a".repeat(64)));
        assert!(!valid_tenant(&"a".repeat(65)));
        assert!(valid_task_id(&"a".repeat(128)));
        assert!(!valid_task_id(&"a".repeat(129)));
        assert!(!valid_task_id(""));
    }

    #[test]
    fn scopes_are_hex() {
        assert!(valid_scope("0123456789abcdefABCDEF"));
        assert!(!valid_scope(""));
        assert!(!valid_scope("abc*"));
        assert!(!valid_scope("ab:cd"));
        assert!(!valid_scope(&"a".repeat(65)));
    }
}
