//! The demo page at `/`: plain static files compiled into the binary (no build
//! step, no CDN), including the official socket.io client script.

use axum::{Router, http::header, response::IntoResponse, routing::get};

const INDEX_HTML: &str = include_str!("../static/index.html");
const APP_JS: &str = include_str!("../static/app.js");
const STYLE_CSS: &str = include_str!("../static/style.css");
/// socket.io-client 4.8.4 `dist/socket.io.min.js`, the version tests/js pins.
const SOCKET_IO_JS: &str = include_str!("../static/socket.io.min.js");

pub fn router() -> Router {
    Router::new()
        .route("/", get(|| file("text/html; charset=utf-8", INDEX_HTML)))
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
