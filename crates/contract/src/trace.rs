//! W3C Trace Context, as the stages hand it on.

/// A W3C Trace Context `traceparent` (`00-<trace id>-<parent id>-<flags>`):
/// which trace a request or event belongs to, and the span it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: the span the next one is a child of.
    pub parent_id: String,
    pub flags: u8,
}

impl TraceParent {
    /// Reads a header value; `None` when it is not a valid one (the
    /// receiver then starts a new trace, as the specification says).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| {
            s.len() == n && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        let zero = |s: &str| s.bytes().all(|b| b == b'0');
        let valid = hex(version, 2)
            && version != "ff"
            && (version != "00" || parts.next().is_none())
            && hex(trace, 32)
            && !zero(trace)
            && hex(parent, 16)
            && !zero(parent)
            && hex(flags, 2);
        valid.then(|| Self {
            trace_id: trace.to_string(),
            parent_id: parent.to_string(),
            flags: u8::from_str_radix(flags, 16).unwrap_or(0),
        })
    }

    /// A new, sampled trace with `span` as its first span (both random).
    pub fn new(trace: u128, span: u64) -> Self {
        Self {
            trace_id: format!("{:032x}", trace.max(1)),
            parent_id: format!("{:016x}", span.max(1)),
            flags: 1,
        }
    }

    /// The same trace, continued by the span `span` (random).
    pub fn child(&self, span: u64) -> Self {
        Self {
            parent_id: format!("{:016x}", span.max(1)),
            ..self.clone()
        }
    }

    /// `header`'s trace continued by `span`, or a new trace.
    pub fn continue_or_start(header: Option<&str>, trace: u128, span: u64) -> Self {
        match header.and_then(Self::parse) {
            Some(parent) => parent.child(span),
            None => Self::new(trace, span),
        }
    }

    pub fn header(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.parent_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_follows_the_w3c_format() {
        let h = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceParent::parse(h).unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.header(), h);
        let child = t.child(0xabc);
        assert_eq!(child.trace_id, t.trace_id);
        assert_eq!(
            child.header(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000abc-01"
        );
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
        // A later version may add fields.
        assert!(TraceParent::parse(&format!("01{}-more", &h[2..])).is_some());
        let fresh = TraceParent::continue_or_start(Some("junk"), 7, 9);
        assert_eq!(
            fresh.header(),
            "00-00000000000000000000000000000007-0000000000000009-01"
        );
    }
}
