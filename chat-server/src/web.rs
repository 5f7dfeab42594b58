//! The demo page at `/`: plain static files compiled into the binary (no build
//! step, no CDN), including the official socket.io client script.

use axum::{Router, http::header, response::IntoResponse, routing::get};

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const STYLE_CSS: &str = include_str!("../static/style.css");
/// socket.io-client 4.8.4 `dist/socket.io.min.js`, the version tests/js pins.
const SOCKET_IO_JS: &str = include_str!("../static/socket.io.min.js");

/// The banner the page shows when auth is off, and what replaces it when on.
const AUTH_OFF_BANNER: &str = "Authentication is off: demo mode, anyone can join any room.";
const AUTH_ON_BANNER: &str = "Authentication is required: open this page as /#token=YOUR_JWT; you can use the rooms your token grants.";

/// The demo page's routes; `auth_required` picks the page's banner.
pub fn router(auth_required: bool) -> Router {
    let index: &'static str = if auth_required {
        Box::leak(
            INDEX_HTML
                .replace(AUTH_OFF_BANNER, AUTH_ON_BANNER)
                .into_boxed_str(),
        )
    } else {
        INDEX_HTML
    };
    Router::new()
        .route("/", get(move || file("text/html; charset=utf-8", index)))
        .route(
            "/app.js",
            get(|| file("text/javascript; charset=utf-8", APP_JS)),
        )
        .route(
            "/style.css",
            get(|| file("text/css; charset=utf-8", STYLE_CSS)),
        )
        .route(
            "/socket.io.min.js",
            get(|| file("text/javascript; charset=utf-8", SOCKET_IO_JS)),
        )
}

async fn file(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type)], body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_the_banner_the_auth_mode_replaces() {
        assert!(INDEX_HTML.contains(AUTH_OFF_BANNER));
    }
}
