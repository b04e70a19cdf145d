//! The host's Prometheus metrics: how long each route of the app takes
//! (`aies_host_http_request_duration_seconds`, from the request's arrival to
//! the response head, component instantiation included) and requests in
//! flight. Served on their own listener (`--metrics-listen`).
//!
//! The route label is the manifest route that matched (`/task/:id`), as
//! Spin names it to the component in `spin-matched-route`: the manifest
//! bounds it, with no help from the component. Labels stay bounded: at
//! most [`MAX_ROUTES`] distinct routes (then `other`), the method from a
//! fixed list, the status as its class (`2xx`).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Distinct route labels kept; later ones count as `other`.
const MAX_ROUTES: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    component: String,
    route: String,
    method: &'static str,
    status: &'static str,
}

type Histograms = Family<RequestLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    duration: Histograms,
    in_flight: Gauge,
    /// Requests taken in since start (the member report's count).
    served: AtomicU64,
    routes: Mutex<HashSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("aies_host");
        let duration: Histograms = Family::new_with_constructor(|| {
            // 0.5 ms to ~33 s.
            Histogram::new(exponential_buckets(0.0005, 2.0, 17))
        });
        let in_flight = Gauge::default();
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response head, by the app's route",
            duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests being served now",
            in_flight.clone(),
        );
        Self {
            registry,
            duration,
            in_flight,
            served: AtomicU64::new(0),
            routes: Mutex::new(HashSet::new()),
        }
    }
}

impl Metrics {
    pub fn started(&self) -> InFlight<'_> {
        self.in_flight.inc();
        self.served.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Requests being served now.
    pub fn in_flight(&self) -> i64 {
        self.in_flight.get()
    }

    /// Requests taken in since start.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    pub fn observe(
        &self,
        component: &str,
        route: &str,
        method: &http::Method,
        status: u16,
        took: Duration,
    ) {
        let route = {
            let mut seen = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            if seen.contains(route) || (seen.len() < MAX_ROUTES && seen.insert(route.to_string())) {
                route.to_string()
            } else {
                "other".to_string()
            }
        };
        let labels = RequestLabels {
            component: component.to_string(),
            route,
            method: method_label(method),
            status: match status {
                100..=199 => "1xx",
                200..=299 => "2xx",
                300..=399 => "3xx",
                400..=499 => "4xx",
                _ => "5xx",
            },
        };
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String does not fail");
        out
    }
}

fn method_label(method: &http::Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Counts a request in flight until dropped.
pub struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_beyond_the_cap_count_as_other() {
        let m = Metrics::default();
        let get = http::Method::GET;
        for i in 0..MAX_ROUTES + 5 {
            m.observe("c", &format!("/r{i}"), &get, 200, Duration::from_millis(3));
        }
        m.observe(
            "c",
            "/r0",
            &http::Method::from_bytes(b"BREW").unwrap(),
            503,
            Duration::ZERO,
        );
        let text = m.encode();
        assert!(text.contains("route=\"other\""), "{text}");
        assert!(
            text.contains("route=\"/r0\",method=\"other\",status=\"5xx\""),
            "{text}"
        );
        assert!(!text.contains(&format!("/r{}\"", MAX_ROUTES + 1)), "{text}");
        let _f = m.started();
        assert!(m.encode().contains("aies_host_http_requests_in_flight 1"));
    }
}
