//! HTTP trigger routes as Spin reads them (spin-routes, on routefinder):
//! `/exact/path`, `:name` for one segment, a trailing `/...` (or `/*`) for
//! anything below. The most specific route wins: segment by segment an
//! exact segment beats a `:name`, which beats the wildcard; then the longer
//! route. A matched route's text names it in the host's metrics, as
//! Spin's `spin-matched-route` header names it to the component.

use std::cmp::Ordering;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Exact(String),
    Param,
    Wildcard,
}

impl Segment {
    fn rank(&self) -> u8 {
        match self {
            Segment::Exact(_) => 0,
            Segment::Param => 1,
            Segment::Wildcard => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// As written (a leading `/` added, one trailing `/` removed).
    text: String,
    segments: Vec<Segment>,
}

impl Route {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let mut text = if raw.starts_with('/') {
            raw.to_string()
        } else {
            format!("/{raw}")
        };
        if text.len() > 1 && text.ends_with('/') {
            text.pop();
        }
        let pattern = match text.strip_suffix("/...") {
            Some(prefix) => format!("{prefix}/*"),
            None if text == "/..." => "/*".to_string(),
            None => text.clone(),
        };
        let parts: Vec<&str> = pattern.split('/').filter(|s| !s.is_empty()).collect();
        let mut segments = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let segment = match *part {
                "*" if i + 1 == parts.len() => Segment::Wildcard,
                "*" => return Err("a wildcard may only end a route".into()),
                ":" => return Err("params must be named".into()),
                p if p.starts_with('*') => {
                    return Err(format!(
                        "since there can only be one wildcard, it doesn't need a name. replace `{p}` with `*`"
                    ))
                }
                p if p.starts_with(':') => Segment::Param,
                p => Segment::Exact(p.to_string()),
            };
            segments.push(segment);
        }
        Ok(Self { text, segments })
    }

    /// Whether `path` (no query) is this route's.
    pub fn matches(&self, path: &str) -> bool {
        let mut parts = path.split('/').filter(|s| !s.is_empty());
        for segment in &self.segments {
            match segment {
                Segment::Wildcard => return true,
                Segment::Param => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
                Segment::Exact(e) => {
                    if parts.next() != Some(e.as_str()) {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// Less is more specific.
    fn specificity(&self, other: &Self) -> Ordering {
        self.segments
            .iter()
            .zip(&other.segments)
            .map(|(a, b)| a.rank().cmp(&b.rank()))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| {
                // `/a` beats `/a/...`; otherwise the longer route.
                let wild = |r: &Self| r.segments.last() == Some(&Segment::Wildcard);
                wild(self)
                    .cmp(&wild(other))
                    .then(other.segments.len().cmp(&self.segments.len()))
            })
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The public routes of an application, each with its component's index.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<(Route, usize)>,
}

impl Router {
    /// Adds a route; the same text again replaces the earlier one (Spin
    /// logs such duplicates and keeps the last).
    pub fn add(&mut self, route: Route, component: usize) {
        if let Some(i) = self.routes.iter().position(|(r, _)| r.text == route.text) {
            tracing::error!(route = %route, "duplicate route: only its last trigger is used");
            self.routes.remove(i);
        }
        self.routes.push((route, component));
    }

    /// The component a path goes to, with the route that matched.
    pub fn route(&self, path: &str) -> Option<(usize, &Route)> {
        self.routes
            .iter()
            .filter(|(r, _)| r.matches(path))
            .min_by(|(a, _), (b, _)| a.specificity(b))
            .map(|(r, i)| (*i, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[&str]) -> Router {
        let mut r = Router::default();
        for (i, route) in routes.iter().enumerate() {
            r.add(Route::parse(route).unwrap(), i);
        }
        r
    }

    fn matched(r: &Router, path: &str) -> Option<String> {
        r.route(path).map(|(_, route)| route.to_string())
    }

    #[test]
    fn the_most_specific_route_wins() {
        let r = router(&[
            "/...",
            "/task/:id",
            "/task/:id/events",
            "/process",
            "/admin/cache/...",
            "/",
        ]);
        assert_eq!(matched(&r, "/task/abc").unwrap(), "/task/:id");
        assert_eq!(matched(&r, "/task/abc/").unwrap(), "/task/:id");
        assert_eq!(matched(&r, "/task/abc/events").unwrap(), "/task/:id/events");
        assert_eq!(matched(&r, "/task/abc/more/x").unwrap(), "/...");
        assert_eq!(matched(&r, "/task").unwrap(), "/...");
        assert_eq!(matched(&r, "/process").unwrap(), "/process");
        assert_eq!(matched(&r, "/admin/cache").unwrap(), "/admin/cache/...");
        assert_eq!(
            matched(&r, "/admin/cache/stats").unwrap(),
            "/admin/cache/..."
        );
        assert_eq!(matched(&r, "/").unwrap(), "/");
        assert_eq!(matched(&r, "/nothing").unwrap(), "/...");
        let exact_only = router(&["/health"]);
        assert_eq!(matched(&exact_only, "/healthz"), None);
        assert_eq!(matched(&exact_only, "/health/x"), None);
    }

    #[test]
    fn spin_route_forms() {
        assert_eq!(Route::parse("process/").unwrap().to_string(), "/process");
        assert!(Route::parse("/static/*").unwrap().matches("/static/a/b"));
        assert!(Route::parse("/a/*/b").is_err());
        assert!(Route::parse("/a/:").is_err());
        assert!(Route::parse("/a/*rest").is_err());
        let mut r = router(&["/x", "/x"]);
        r.add(Route::parse("/x").unwrap(), 7);
        assert_eq!(r.route("/x").unwrap().0, 7, "the last duplicate wins");
    }
}
