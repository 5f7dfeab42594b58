//! The demo page at `/`: plain static files compiled into the binary (no build
//! step, no CDN), including the official socket.io client script and the
//! chatscale client library (clients/js) the page is written on.

use axum::{Router, http::header, response::IntoResponse, routing::get};

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const STYLE_CSS: &str = include_str!("../static/style.css");
/// socket.io-client 4.8.4 `dist/socket.io.min.js`, the version tests/js pins.
const SOCKET_IO_JS: &str = include_str!("../static/socket.io.min.js");
/// The same release's ES-module build, `dist/socket.io.esm.min.js`, which the
/// page's import map names for the library's `import 'socket.io-client'`.
const SOCKET_IO_ESM_JS: &str = include_str!("../static/socket.io.esm.min.js");
/// `@chatscale/client`, one ES module with no build step.
const CHATSCALE_CLIENT_JS: &str = include_str!("../../clients/js/src/index.js");

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
        .route(
            "/socket.io.esm.min.js",
            get(|| file("text/javascript; charset=utf-8", SOCKET_IO_ESM_JS)),
        )
        .route(
            "/chatscale-client.js",
            get(|| file("text/javascript; charset=utf-8", CHATSCALE_CLIENT_JS)),
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

    #[test]
    fn the_page_loads_its_module_through_the_import_map() {
        assert!(INDEX_HTML.contains(r#""socket.io-client": "/socket.io.esm.min.js""#));
        assert!(INDEX_HTML.contains(r#"<script type="module" src="/app.js">"#));
        assert!(APP_JS.contains("from '/chatscale-client.js'"));
        assert!(CHATSCALE_CLIENT_JS.contains("from 'socket.io-client'"));
        assert!(SOCKET_IO_ESM_JS.starts_with("/*!\n * Socket.IO v4.8.4"));
    }
}
