//! `allowed_outbound_hosts`: which `scheme://host:port` a component may reach.
//!
//! Entries follow Spin's form: `scheme://host[:port]`, where scheme, host and
//! port may be `*`, a host may start with `*.`, and a missing port means the
//! scheme's default port. Anything not listed is refused.

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    scheme: Option<String>,
    host: HostPattern,
    port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com`.
    Suffix(String),
}

#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    entries: Vec<Entry>,
}

pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        "redis" => Some(6379),
        _ => None,
    }
}

impl AllowedHosts {
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self> {
        let entries = entries
            .iter()
            .map(|e| parse_entry(e.as_ref()))
            .collect::<Result<_>>()?;
        Ok(Self { entries })
    }

    /// Whether `scheme://host:port` may be reached (`port` None = scheme default).
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        let port = port.or_else(|| default_port(scheme));
        self.entries.iter().any(|e| {
            e.scheme.as_deref().is_none_or(|s| s == scheme)
                && match &e.host {
                    HostPattern::Any => true,
                    HostPattern::Exact(h) => *h == host,
                    HostPattern::Suffix(s) => host.ends_with(&format!(".{s}")),
                }
                && match e.port {
                    None => true,
                    Some(p) => Some(p) == port,
                }
        })
    }

    /// Checks a URL such as `redis://127.0.0.1:6379/2` or `https://api.x.com/v1`.
    pub fn allows_url(&self, url: &str) -> bool {
        match split_url(url) {
            Ok((scheme, host, port)) => self.allows(&scheme, &host, port),
            Err(_) => false,
        }
    }
}

fn parse_entry(entry: &str) -> Result<Entry> {
    let (scheme, rest) = entry
        .split_once("://")
        .with_context(|| format!("allowed host {entry:?} must look like scheme://host[:port]"))?;
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        bail!("allowed host {entry:?} must not have a path");
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, "*")) => (h, None),
        Some((h, p)) => (
            h,
            Some(
                p.parse::<u16>()
                    .with_context(|| format!("bad port in {entry:?}"))?,
            ),
        ),
        None => (authority, default_port(scheme)),
    };
    if host.is_empty() {
        bail!("allowed host {entry:?} has no host");
    }
    let host = host.to_ascii_lowercase();
    let host = if host == "*" {
        HostPattern::Any
    } else if let Some(suffix) = host.strip_prefix("*.") {
        HostPattern::Suffix(suffix.to_string())
    } else {
        HostPattern::Exact(host)
    };
    Ok(Entry {
        scheme: (scheme != "*").then(|| scheme.to_string()),
        host,
        port,
    })
}

/// `scheme://host[:port][/...]` -> (scheme, host, port).
pub fn split_url(url: &str) -> Result<(String, String, Option<u16>)> {
    let (scheme, rest) = url.split_once("://").context("URL has no scheme")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Drop any user:password@ part.
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            (h, Some(p.parse::<u16>().context("bad port")?))
        }
        _ => (authority, None),
    };
    if host.is_empty() {
        bail!("URL has no host");
    }
    Ok((scheme.to_ascii_lowercase(), host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_wildcard_and_default_ports() {
        let a = AllowedHosts::parse(&[
            "http://embed.spin.internal",
            "redis://127.0.0.1:6380",
            "https://*.googleapis.com",
            "http://localhost:*",
        ])
        .unwrap();
        assert!(a.allows("http", "embed.spin.internal", None));
        assert!(!a.allows("http", "store.spin.internal", None));
        assert!(a.allows_url("redis://127.0.0.1:6380/2"));
        assert!(!a.allows_url("redis://127.0.0.1:6379/2"));
        assert!(a.allows_url("https://generativelanguage.googleapis.com/v1beta/x"));
        assert!(!a.allows_url("http://generativelanguage.googleapis.com/v1beta/x"));
        assert!(a.allows_url("http://localhost:9999/x"));
        assert!(!a.allows_url("http://evil.example/x"));
    }

    #[test]
    fn bad_entries_are_errors() {
        assert!(AllowedHosts::parse(&["example.com"]).is_err());
        assert!(AllowedHosts::parse(&["https://example.com/path"]).is_err());
        assert!(AllowedHosts::parse(&["https://example.com:99999"]).is_err());
    }
}
