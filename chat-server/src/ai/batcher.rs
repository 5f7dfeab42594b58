//! Token batching: per-token emits would flood clients and Redis, so tokens are
//! gathered into chunks. A chunk is flushed once it holds `max_chars`
//! characters or `max_delay` after its first token, whichever comes first, and
//! at the end of the answer.

use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::{Instant, sleep_until};

use super::{AiError, TokenStream};

#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_chars: usize,
    pub max_delay: Duration,
}

/// How an answer ended, carried by its last batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Complete,
    Failed(AiError),
}

/// One chunk ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub text: String,
    /// How many provider tokens the text holds.
    pub tokens: usize,
    /// Set on the last batch only.
    pub end: Option<End>,
}

/// Accumulates tokens until a flush rule fires.
struct Buffer {
    text: String,
    chars: usize,
    tokens: usize,
    deadline: Option<Instant>,
}

impl Buffer {
    fn push(&mut self, token: &str, max_delay: Duration) {
        if self.deadline.is_none() {
            self.deadline = Some(Instant::now() + max_delay);
        }
        self.text.push_str(token);
        self.chars += token.chars().count();
        self.tokens += 1;
    }

    fn take(&mut self, end: Option<End>) -> Batch {
        self.chars = 0;
        self.deadline = None;
        Batch {
            text: std::mem::take(&mut self.text),
            tokens: std::mem::take(&mut self.tokens),
            end,
        }
    }
}

/// Turns a token stream into a stream of batches; the last batch has `end` set
/// (its text may be empty when the size rule flushed everything before).
pub fn batch(mut tokens: TokenStream, config: BatchConfig) -> impl Stream<Item = Batch> + Send {
    async_stream::stream! {
        let mut buffer = Buffer { text: String::new(), chars: 0, tokens: 0, deadline: None };
        loop {
            let next = match buffer.deadline {
                Some(deadline) => tokio::select! {
                    biased;
                    next = tokens.next() => Some(next),
                    () = sleep_until(deadline) => None,
                },
                None => Some(tokens.next().await),
            };
            match next {
                None => yield buffer.take(None),
                Some(Some(Ok(token))) => {
                    buffer.push(&token, config.max_delay);
                    if buffer.chars >= config.max_chars || config.max_delay.is_zero() {
                        yield buffer.take(None);
                    }
                }
                Some(Some(Err(error))) => {
                    yield buffer.take(Some(End::Failed(error)));
                    break;
                }
                Some(None) => {
                    yield buffer.take(Some(End::Complete));
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A provider stand-in: each token arrives `gap` after the previous one.
    fn timed(tokens: Vec<&'static str>, gap: Duration, fail_at_end: bool) -> TokenStream {
        Box::pin(async_stream::stream! {
            for token in tokens {
                tokio::time::sleep(gap).await;
                yield Ok(token.to_owned());
            }
            if fail_at_end {
                yield Err(AiError::StreamBroken);
            }
        })
    }

    fn config(max_chars: usize, max_delay_ms: u64) -> BatchConfig {
        BatchConfig {
            max_chars,
            max_delay: Duration::from_millis(max_delay_ms),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_on_size_when_tokens_come_fast() {
        let tokens = vec!["0123456789"; 10];
        let batches: Vec<Batch> = batch(timed(tokens, Duration::ZERO, false), config(48, 50))
            .collect()
            .await;
        let sizes: Vec<usize> = batches.iter().map(|b| b.tokens).collect();
        assert_eq!(sizes, vec![5, 5, 0]);
        assert_eq!(batches[0].text.len(), 50);
        assert_eq!(batches.last().unwrap().end, Some(End::Complete));
    }

    #[tokio::test(start_paused = true)]
    async fn flushes_on_time_and_never_holds_a_token_longer_than_the_delay() {
        let start = Instant::now();
        let gap = Duration::from_millis(20);
        let mut stream = std::pin::pin!(batch(timed(vec!["ab"; 9], gap, false), config(48, 50)));
        let mut first_token_ms = 20u64; // the first token arrives after one gap
        let mut sizes = Vec::new();
        while let Some(b) = stream.next().await {
            if b.tokens > 0 {
                let held = start.elapsed().as_millis() as u64 - first_token_ms;
                assert!(held <= 50, "chunk held {held} ms");
                first_token_ms += 20 * b.tokens as u64;
            }
            sizes.push(b.tokens);
        }
        // 20 ms apart with a 50 ms bound: three tokens a chunk; the stream ends
        // right after the ninth token, so the last chunk is also the end.
        assert_eq!(sizes, vec![3, 3, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_ends_the_stream_with_the_buffered_text() {
        let stream = timed(vec!["a", "b"], Duration::from_millis(1), true);
        let batches: Vec<Batch> = batch(stream, config(48, 50)).collect().await;
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].text, "ab");
        assert_eq!(batches[0].end, Some(End::Failed(AiError::StreamBroken)));
    }

    #[tokio::test(start_paused = true)]
    async fn zero_delay_sends_every_token_alone_and_text_is_preserved() {
        let tokens = vec!["é", "ü", "🙂", "x"];
        let batches: Vec<Batch> =
            batch(timed(tokens.clone(), Duration::ZERO, false), config(48, 0))
                .collect()
                .await;
        assert_eq!(batches.len(), 5);
        let text: String = batches.iter().map(|b| b.text.as_str()).collect();
        assert_eq!(text, tokens.concat());
    }

    #[tokio::test(start_paused = true)]
    async fn size_counts_characters_not_bytes() {
        let tokens = vec!["éé"; 3];
        let batches: Vec<Batch> = batch(timed(tokens, Duration::ZERO, false), config(4, 50))
            .collect()
            .await;
        let sizes: Vec<usize> = batches.iter().map(|b| b.tokens).collect();
        assert_eq!(sizes, vec![2, 1]);
    }
}
