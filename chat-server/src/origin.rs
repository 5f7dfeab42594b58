//! Browser origins. A request with an `Origin` header to `/socket.io/` (a
//! long-polling request or a WebSocket upgrade) must come from the server's
//! own origin or from one listed in `--allowed-origins`; others get 403.
//! Listed origins also get CORS headers, so that pages there can long-poll.
//! Requests without an `Origin` header (non-browser clients) pass untouched.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tower_http::cors::{AllowOrigin, CorsLayer};

#[derive(Debug, Clone, Default)]
pub struct Origins {
    any: bool,
    /// Lower-cased `scheme://host[:port]`, without a trailing slash.
    listed: Vec<String>,
}

fn normalize(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

impl Origins {
    pub fn new(allowed: &[String]) -> Self {
        Self {
            any: allowed.iter().any(|o| o.trim() == "*"),
            listed: allowed
                .iter()
                .map(|o| normalize(o))
                .filter(|o| !o.is_empty() && o != "*")
                .collect(),
        }
    }

    /// Is a request from `origin` to the server reached at `host` allowed?
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = normalize(origin);
        if self.any || self.listed.contains(&origin) {
            return true;
        }
        // Same origin: the Origin's authority is the Host the browser asked for.
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"));
        match (authority, host) {
            (Some(authority), Some(host)) => {
                let host = host.trim().to_ascii_lowercase();
                authority == host
                    || authority == host.trim_end_matches(":80")
                    || authority == host.trim_end_matches(":443")
            }
            _ => false,
        }
    }

    /// CORS headers for the listed origins (none when only same-origin is allowed).
    pub fn cors(&self) -> Option<CorsLayer> {
        let layer = CorsLayer::new()
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]);
        if self.any {
            return Some(layer.allow_origin(AllowOrigin::any()));
        }
        if self.listed.is_empty() {
            return None;
        }
        let listed: Vec<HeaderValue> = self
            .listed
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        Some(
            layer
                .allow_origin(AllowOrigin::predicate(move |origin, _| {
                    origin
                        .to_str()
                        .is_ok_and(|o| listed.iter().any(|l| l == &normalize(o)))
                }))
                .allow_credentials(true),
        )
    }
}

/// Axum middleware: refuses Socket.IO requests from disallowed browser origins.
pub async fn guard(State(origins): State<Arc<Origins>>, request: Request, next: Next) -> Response {
    if request.uri().path().starts_with("/socket.io")
        && let Some(origin) = request.headers().get(header::ORIGIN)
    {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        let allowed = origin.to_str().is_ok_and(|o| origins.allows(o, host));
        if !allowed {
            return (
                StatusCode::FORBIDDEN,
                "origin not allowed (see --allowed-origins)",
            )
                .into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_is_always_allowed() {
        let none = Origins::new(&[]);
        assert!(none.allows("http://127.0.0.1:3000", Some("127.0.0.1:3000")));
        assert!(none.allows("https://chat.example.com", Some("chat.example.com")));
        assert!(none.allows("https://chat.example.com", Some("chat.example.com:443")));
        assert!(!none.allows("http://evil.example", Some("127.0.0.1:3000")));
        assert!(!none.allows("http://127.0.0.1:3001", Some("127.0.0.1:3000")));
        assert!(!none.allows("null", Some("127.0.0.1:3000")));
        assert!(!none.allows("http://127.0.0.1:3000", None));
        assert!(none.cors().is_none());
    }

    #[test]
    fn listed_origins_and_any() {
        let listed = Origins::new(&["https://App.example/".into()]);
        assert!(listed.allows("https://app.example", Some("chat.example")));
        assert!(!listed.allows("https://other.example", Some("chat.example")));
        assert!(listed.cors().is_some());
        assert!(Origins::new(&["*".into()]).allows("http://x", None));
    }
}
