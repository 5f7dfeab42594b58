//! The `openai` provider: any OpenAI-compatible `/chat/completions` endpoint
//! with `stream: true` (OpenAI, vLLM, Ollama, LiteLLM). Reads the server-sent
//! events and yields each `choices[0].delta.content` as a token.

use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;

use super::{AiError, AiProvider, AiRequest, SYSTEM_PROMPT, TokenStream, sse};
use crate::{secret::Secret, store::Role};

pub struct OpenAiProvider {
    client: reqwest::Client,
    url: String,
    model: String,
    api_key: Option<Secret>,
}

impl OpenAiProvider {
    /// `base_url` is the API root, e.g. `https://api.openai.com/v1`.
    pub fn new(base_url: &str, model: &str, api_key: Option<Secret>) -> anyhow::Result<Self> {
        Ok(Self {
            client: sse::client()?,
            url: format!("{}/chat/completions", base_url.trim_end_matches('/')),
            model: model.to_owned(),
            api_key,
        })
    }

    fn body(&self, request: &AiRequest) -> serde_json::Value {
        let mut messages = vec![json!({"role": "system", "content": SYSTEM_PROMPT})];
        messages.extend(request.history.iter().map(|turn| {
            let role = match turn.role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            json!({"role": role, "content": turn.text})
        }));
        messages.push(json!({"role": "user", "content": request.prompt}));
        json!({"model": self.model, "stream": true, "messages": messages})
    }
}

#[derive(Deserialize)]
struct CompletionChunk {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
}

impl AiProvider for OpenAiProvider {
    fn answer(&self, request: AiRequest) -> TokenStream {
        let mut http = self.client.post(&self.url).json(&self.body(&request));
        if let Some(key) = &self.api_key {
            http = http.bearer_auth(key.expose());
        }
        // In `try_stream!` a `yield` is a token and `?` ends the answer with its error.
        Box::pin(async_stream::try_stream! {
            let mut events = std::pin::pin!(sse::events(http));
            let mut finished = false;
            while let Some(data) = events.next().await {
                let data = data?;
                if data.trim() == "[DONE]" {
                    return;
                }
                let Ok(chunk) = serde_json::from_str::<CompletionChunk>(&data) else {
                    tracing::warn!("AI provider sent an event that is not a completion chunk");
                    Err(AiError::InvalidResponse)?
                };
                for choice in chunk.choices.into_iter().take(1) {
                    finished |= choice.finish_reason.is_some();
                    if let Some(content) = choice.delta.content.filter(|c| !c.is_empty()) {
                        yield content;
                    }
                }
            }
            if !finished {
                Err(AiError::StreamBroken)?;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Turn;

    #[test]
    fn the_request_carries_history_then_the_prompt() {
        let provider = OpenAiProvider::new("http://127.0.0.1:1/v1/", "m", None).unwrap();
        assert_eq!(provider.url, "http://127.0.0.1:1/v1/chat/completions");
        let body = provider.body(&AiRequest {
            history: vec![
                Turn {
                    role: Role::User,
                    text: "q1".into(),
                },
                Turn {
                    role: Role::Assistant,
                    text: "a1".into(),
                },
            ],
            prompt: "q2".into(),
        });
        assert_eq!(body["stream"], true);
        assert_eq!(body["model"], "m");
        let roles: Vec<&str> = body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["system", "user", "assistant", "user"]);
        assert_eq!(body["messages"][3]["content"], "q2");
    }

    #[tokio::test]
    async fn an_unreachable_provider_ends_with_a_safe_error() {
        // Port 1 on loopback: nothing listens there.
        let key = Secret::new("sk-test-key");
        let provider = OpenAiProvider::new("http://127.0.0.1:1/v1", "m", Some(key)).unwrap();
        let request = AiRequest {
            history: vec![],
            prompt: "hi".into(),
        };
        let items: Vec<_> = provider.answer(request).collect().await;
        assert_eq!(items, vec![Err(AiError::Unreachable)]);
        assert!(!AiError::Unreachable.to_string().contains("sk-test-key"));
    }
}
