//! What the hosted providers share: send the streaming request, refuse a
//! non-2xx answer, and read the body as server-sent events. Failures become
//! `AiError`s that are safe to show clients (no key, URL or response body).

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};

use super::AiError;

/// An HTTP client for a provider: bounded connect time, and a long read
/// timeout, since a model may think for a while between tokens.
pub fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(120))
        .build()?)
}

/// The `data` of each server-sent event of the response, in order; ends after
/// the last one, or with one error.
pub fn events(http: reqwest::RequestBuilder) -> impl Stream<Item = Result<String, AiError>> {
    async_stream::stream! {
        let response = match http.send().await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%error, "AI provider request failed");
                yield Err(AiError::Unreachable);
                return;
            }
        };
        let status = response.status();
        if !status.is_success() {
            tracing::warn!(status = status.as_u16(), "AI provider refused the request");
            yield Err(AiError::Status(status.as_u16()));
            return;
        }
        let mut events = response.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            match event {
                Ok(event) => yield Ok(event.data),
                Err(error) => {
                    tracing::warn!(%error, "AI provider stream broke off");
                    yield Err(AiError::StreamBroken);
                    return;
                }
            }
        }
    }
}
