//! AI providers behind one trait. A provider turns a prompt and the room's
//! recent conversation into a stream of tokens; the batcher groups them into
//! chunks. Delivery and an answer's life happen in `answers`, so a new
//! provider only has to produce tokens.

mod anthropic;
pub mod batcher;
mod demo;
mod openai;
mod sse;

pub use anthropic::AnthropicProvider;
pub use demo::DemoProvider;
pub use openai::OpenAiProvider;

use std::pin::Pin;

use futures::Stream;

use crate::store::Turn;

/// The instructions every hosted model gets before the conversation.
const SYSTEM_PROMPT: &str = "You are a helpful assistant taking part in a group chat. \
Answer the last user message; earlier messages are the room's recent conversation.";

/// What a provider is asked: the room's recent conversation, then the prompt.
#[derive(Debug, Clone)]
pub struct AiRequest {
    pub history: Vec<Turn>,
    pub prompt: String,
}

/// Why an answer ended early. The text is safe to send to clients: it never
/// holds the API key, the provider's response body or its URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiError {
    #[error("the AI provider could not be reached")]
    Unreachable,
    #[error("the AI provider answered HTTP {0}")]
    Status(u16),
    #[error("the AI provider stream broke off")]
    StreamBroken,
    #[error("the AI provider sent a response that could not be read")]
    InvalidResponse,
}

/// Tokens of one answer, in order; ends after the last token or at the first error.
pub type TokenStream = Pin<Box<dyn Stream<Item = Result<String, AiError>> + Send>>;

pub trait AiProvider: Send + Sync + 'static {
    /// Starts answering. The stream is lazy: nothing happens until it is polled.
    fn answer(&self, request: AiRequest) -> TokenStream;
}
