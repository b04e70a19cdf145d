//! `allowed_outbound_hosts`: which `scheme://host:port` a component may
//! reach. Entries are read as Spin reads them (spin
//! `outbound-networking-config/src/allowed_hosts.rs`), with its messages:
//! - scheme: `*` or letters only;
//! - host: `*`, `*.domain` (any subdomain), a domain, an IP or a CIDR
//!   range (`10.0.0.0/8`), or `self`;
//! - port: a number, `*`, a range `a..b` (end excluded), or none: the
//!   scheme's well-known port (http, https, redis, postgres, mysql, mqtt;
//!   other schemes, `*` among them, must name one);
//! - no path (one trailing `/` is allowed).
//!
//! Anything not listed is refused.

use anyhow::{bail, Context, Result};
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    /// `self`: the application itself (relative URLs); no component here
    /// makes such calls.
    ToSelf,
    Exact(String),
    /// `*.example.com`: any subdomain of `example.com` (held as `.example.com`).
    Suffix(String),
    Cidr(ipnet::IpNet),
}

#[derive(Debug, Clone, PartialEq)]
enum PortPattern {
    Any,
    /// `start..end`, end excluded; one port is `p..p+1`.
    Range(u16, u32),
}

#[derive(Debug, Clone, Default)]
pub struct AllowedHosts {
    entries: Vec<Entry>,
}

/// The port a URL of `scheme` reaches when it names none.
pub fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "postgres" => Some(5432),
        "mysql" => Some(3306),
        "redis" => Some(6379),
        "mqtt" => Some(1883),
        "http" => Some(80),
        "https" => Some(443),
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
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = host.to_ascii_lowercase();
        let Some(port) = port.or_else(|| default_port(scheme)) else {
            return false;
        };
        let ip: Option<IpAddr> = host.parse().ok();
        self.entries.iter().any(|e| {
            e.scheme.as_deref().is_none_or(|s| s == scheme)
                && match &e.host {
                    HostPattern::Any => true,
                    HostPattern::ToSelf => false,
                    HostPattern::Exact(h) => *h == host,
                    HostPattern::Suffix(s) => host.ends_with(s.as_str()),
                    HostPattern::Cidr(net) => ip.is_some_and(|ip| net.contains(&ip)),
                }
                && match e.port {
                    PortPattern::Any => true,
                    PortPattern::Range(start, end) => port >= start && u32::from(port) < end,
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

/// The host of an entry, lower-cased, when the entry parses (`*.x` kept as
/// written): what Spin looks at to decide that a component chains.
pub fn host_of(entry: &str) -> Option<String> {
    let e = parse_entry(entry).ok()?;
    Some(match e.host {
        HostPattern::Exact(h) => h,
        HostPattern::Suffix(s) => format!("*{s}"),
        _ => return None,
    })
}

fn parse_entry(original: &str) -> Result<Entry> {
    let entry = original.trim();
    let Some((scheme, rest)) = entry.split_once("://") else {
        match entry {
            "*" | ":" | "" | "?" => bail!(
                "{entry:?} is not an allowed outbound host format.\nHosts must be in the form \
                 <scheme>://<host>[:<port>], with '*' wildcards allowed for each.\nIf you \
                 intended to allow all outbound networking, you can use '*://*:*' - this will \
                 obviate all network sandboxing."
            ),
            _ => bail!("{entry:?} does not contain a scheme (e.g., 'http://' or '*://')"),
        }
    };
    let (host, port) = match rest.rsplit_once(':') {
        None => (rest, ""),
        Some((h, "")) => (h, ""),
        Some((h, tail)) => {
            if parse_host(rest).is_ok() {
                (rest, "")
            } else {
                let port = match tail.split_once('/') {
                    Some((_, path)) if !path.is_empty() => {
                        bail!("{entry:?} has a path but is not allowed to")
                    }
                    Some((port, _)) => port,
                    None => tail,
                };
                (h, port)
            }
        }
    };
    let port =
        parse_port(port, scheme).with_context(|| format!("Invalid allowed host port {port:?}"))?;
    let scheme =
        parse_scheme(scheme).with_context(|| format!("Invalid allowed host scheme {scheme:?}"))?;
    let host = parse_host(host).with_context(|| format!("Invalid allowed host {host:?}"))?;
    Ok(Entry { scheme, host, port })
}

fn parse_scheme(scheme: &str) -> Result<Option<String>> {
    if scheme == "*" {
        return Ok(None);
    }
    if scheme.starts_with('{') {
        bail!("scheme lists are not supported");
    }
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphabetic()) {
        bail!("only alphabetic characters are allowed");
    }
    Ok(Some(scheme.to_ascii_lowercase()))
}

fn parse_port(port: &str, scheme: &str) -> Result<PortPattern> {
    if port.is_empty() {
        let Some(p) = default_port(scheme) else {
            bail!(
                "no port was provided and the scheme {scheme:?} does not have a known default \
                 port number"
            );
        };
        return Ok(PortPattern::Range(p, u32::from(p) + 1));
    }
    if port == "*" {
        return Ok(PortPattern::Any);
    }
    if port.starts_with('{') {
        bail!("port lists are not yet supported");
    }
    if let Some((start, end)) = port.split_once("..") {
        let number = |s: &str| {
            s.parse::<u16>()
                .with_context(|| format!("port range {port:?} contains non-number"))
        };
        return Ok(PortPattern::Range(number(start)?, u32::from(number(end)?)));
    }
    let p: u16 = port
        .parse()
        .with_context(|| format!("port {port:?} is not a number"))?;
    Ok(PortPattern::Range(p, u32::from(p) + 1))
}

fn parse_host(host: &str) -> Result<HostPattern> {
    let host = host.trim();
    match host {
        "*" => return Ok(HostPattern::Any),
        "self" | "self.alt" => return Ok(HostPattern::ToSelf),
        _ => {}
    }
    if host.starts_with('{') {
        bail!("host lists are not yet supported");
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(HostPattern::Cidr(ipnet::IpNet::from(ip)));
    }
    if let Ok(net) = host.parse::<ipnet::IpNet>() {
        return Ok(HostPattern::Cidr(net.trunc()));
    }
    let host = host.strip_suffix('/').unwrap_or(host);
    if host.contains('/') {
        bail!("must not include a path");
    }
    if let Some(domain) = host.strip_prefix("*.") {
        if domain.contains('*') {
            bail!("wildcards are allowed only as prefixes");
        }
        let parsed = url::Host::parse(domain)
            .with_context(|| format!("invalid wildcard host \"*.{domain}\""))?;
        let url::Host::Domain(domain) = parsed else {
            bail!("wildcard suffix must be a domain");
        };
        return Ok(HostPattern::Suffix(format!(".{domain}")));
    }
    if host.contains('*') {
        bail!("wildcards are allowed only as subdomains");
    }
    match url::Host::parse(host)? {
        url::Host::Domain(d) => Ok(HostPattern::Exact(d)),
        url::Host::Ipv4(ip) => Ok(HostPattern::Cidr(ipnet::IpNet::from(IpAddr::V4(ip)))),
        url::Host::Ipv6(ip) => Ok(HostPattern::Cidr(ipnet::IpNet::from(IpAddr::V6(ip)))),
    }
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
            "postgres://10.1.0.0/16",
            "mqtt://broker:8000..8002",
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
        assert!(a.allows_url("postgres://10.1.200.3/db"));
        assert!(!a.allows_url("postgres://10.2.0.1/db"));
        assert!(a.allows_url("mqtt://broker:8001"));
        assert!(
            !a.allows_url("mqtt://broker:8002"),
            "the range's end is excluded"
        );
        assert_eq!(
            host_of("http://cache-lookup.spin.internal").as_deref(),
            Some("cache-lookup.spin.internal")
        );
        assert_eq!(
            host_of("*://*.spin.internal:*").as_deref(),
            Some("*.spin.internal")
        );
    }

    /// As Spin: `rediss` is a scheme of its own, with no default port, and
    /// a URL's user and password are not part of what is checked.
    #[test]
    fn tls_redis_is_its_own_scheme_and_names_its_port() {
        assert!(AllowedHosts::parse(&["rediss://cache"]).is_err());
        let a = AllowedHosts::parse(&["rediss://cache:6380"]).unwrap();
        assert!(a.allows_url("rediss://aies-app:s3cret@cache:6380/2"));
        assert!(!a.allows_url("redis://cache:6380/2"));
        assert!(
            !a.allows_url("rediss://cache/2"),
            "no port: no default for rediss"
        );
    }

    #[test]
    fn what_spin_refuses() {
        for (entry, why) in [
            ("example.com", "does not contain a scheme"),
            ("*", "is not an allowed outbound host format"),
            ("https://example.com:443/path", "has a path"),
            ("https://example.com/path", "Invalid allowed host"),
            ("https://example.com:99999", "Invalid allowed host port"),
            ("*://example.com", "does not have a known default port"),
            ("tcp://example.com", "does not have a known default port"),
            (
                "redis+tls://example.com:6379",
                "Invalid allowed host scheme",
            ),
            ("https://exa*mple.com", "Invalid allowed host"),
            ("https://*.*.com", "Invalid allowed host"),
        ] {
            let err = format!("{:#}", AllowedHosts::parse(&[entry]).unwrap_err());
            assert!(err.contains(why), "{entry}: {err}");
        }
        for ok in [
            "*://*:*",
            "*://example.com:*",
            "https://example.com/",
            "http://self",
            "http://[::1]:8080",
        ] {
            AllowedHosts::parse(&[ok]).unwrap_or_else(|e| panic!("{ok}: {e:#}"));
        }
    }
}
