//! The `anthropic` provider: Claude through the Anthropic Messages API
//! (`POST /v1/messages` with `stream: true`). Reads the server-sent events and
//! yields the text of each `content_block_delta` as a token; `message_stop`
//! ends the answer, an `error` event ends it early.

use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::{AiError, AiProvider, AiRequest, SYSTEM_PROMPT, TokenStream, sse};
use crate::{secret::Secret, store::Role};

/// The Messages API version this provider speaks.
const API_VERSION: &str = "2023-06-01";

pub struct AnthropicProvider {
    client: reqwest::Client,
    url: String,
    model: String,
    max_tokens: u32,
    api_key: Option<Secret>,
}

impl AnthropicProvider {
    /// `base_url` is the API root, e.g. `https://api.anthropic.com`.
    pub fn new(
        base_url: &str,
        model: &str,
        max_tokens: u32,
        api_key: Option<Secret>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            client: sse::client()?,
            url: format!("{}/v1/messages", base_url.trim_end_matches('/')),
            model: model.to_owned(),
            max_tokens,
            api_key,
        })
    }

    /// The conversation as the Messages API wants it: starting with a user
    /// turn and alternating, so neighbouring turns of one role (several people
    /// talking before the AI answers) are joined into one.
    fn body(&self, request: &AiRequest) -> serde_json::Value {
        let mut turns: Vec<(&str, String)> = Vec::new();
        let said = request
            .history
            .iter()
            .map(|turn| (turn.role, turn.text.as_str()))
            .chain(std::iter::once((Role::User, request.prompt.as_str())))
            .skip_while(|(role, _)| *role == Role::Assistant);
        for (role, text) in said {
            let role = match role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            match turns.last_mut() {
                Some((last, joined)) if *last == role => {
                    joined.push_str("\n\n");
                    joined.push_str(text);
                }
                _ => turns.push((role, text.to_owned())),
            }
        }
        let messages: Vec<_> = turns
            .into_iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect();
        json!({
            "model": self.model,
            "max_tokens": self.max_tokens,
            "stream": true,
            "system": SYSTEM_PROMPT,
            "messages": messages,
        })
    }
}

/// The events this provider reads; the others (`message_start`, `ping` ...) are skipped.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    ContentBlockDelta {
        delta: BlockDelta,
    },
    MessageStop,
    Error {},
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct BlockDelta {
    #[serde(default)]
    text: Option<String>,
}

impl AiProvider for AnthropicProvider {
    fn answer(&self, request: AiRequest) -> TokenStream {
        let mut http = self
            .client
            .post(&self.url)
            .header("anthropic-version", API_VERSION)
            .json(&self.body(&request));
        if let Some(key) = &self.api_key {
            http = http.header("x-api-key", key.expose());
        }
        // In `try_stream!` a `yield` is a token and `?` ends the answer with its error.
        Box::pin(async_stream::try_stream! {
            let mut events = std::pin::pin!(sse::events(http));
            while let Some(data) = events.next().await {
                match serde_json::from_str::<Event>(&data?) {
                    Ok(Event::ContentBlockDelta { delta }) => {
                        if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                            yield text;
                        }
                    }
                    Ok(Event::MessageStop) => return,
                    Ok(Event::Error {}) => {
                        // The event's message may quote the request: not logged.
                        tracing::warn!("AI provider reported an error mid-answer");
                        Err(AiError::StreamBroken)?;
                    }
                    Ok(Event::Other) => {}
                    Err(_) => {
                        tracing::warn!("AI provider sent an event that could not be read");
                        Err(AiError::InvalidResponse)?;
                    }
                }
            }
            Err(AiError::StreamBroken)?;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Turn;

    fn turn(role: Role, text: &str) -> Turn {
        Turn {
            role,
            text: text.into(),
        }
    }

    #[test]
    fn the_conversation_starts_with_a_user_and_alternates() {
        let provider = AnthropicProvider::new("http://127.0.0.1:1/", "claude", 512, None).unwrap();
        assert_eq!(provider.url, "http://127.0.0.1:1/v1/messages");
        let body = provider.body(&AiRequest {
            history: vec![
                turn(Role::Assistant, "an answer whose question was trimmed"),
                turn(Role::User, "ann: hi"),
                turn(Role::User, "bob: hello"),
                turn(Role::Assistant, "a1"),
                turn(Role::User, "cat: and?"),
            ],
            prompt: "q2".into(),
        });
        assert_eq!(body["stream"], true);
        assert_eq!(body["model"], "claude");
        assert_eq!(body["max_tokens"], 512);
        assert_eq!(body["system"], SYSTEM_PROMPT);
        assert_eq!(
            body["messages"],
            json!([
                {"role": "user", "content": "ann: hi\n\nbob: hello"},
                {"role": "assistant", "content": "a1"},
                {"role": "user", "content": "cat: and?\n\nq2"},
            ])
        );
    }

    #[test]
    fn events_are_read_by_type() {
        let delta =
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#;
        assert!(matches!(
            serde_json::from_str::<Event>(delta).unwrap(),
            Event::ContentBlockDelta { delta } if delta.text.as_deref() == Some("Hi")
        ));
        let error =
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert!(matches!(
            serde_json::from_str::<Event>(error).unwrap(),
            Event::Error {}
        ));
        let ping = r#"{"type":"ping"}"#;
        assert!(matches!(
            serde_json::from_str::<Event>(ping).unwrap(),
            Event::Other
        ));
        assert!(serde_json::from_str::<Event>("not json").is_err());
    }

    #[tokio::test]
    async fn an_unreachable_provider_ends_with_a_safe_error() {
        let key = Secret::new("sk-ant-test-key");
        let provider = AnthropicProvider::new("http://127.0.0.1:1", "m", 64, Some(key)).unwrap();
        let request = AiRequest {
            history: vec![],
            prompt: "hi".into(),
        };
        let items: Vec<_> = provider.answer(request).collect().await;
        assert_eq!(items, vec![Err(AiError::Unreachable)]);
    }
}
