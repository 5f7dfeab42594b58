//! The built-in demo model: deterministic text at a configurable token rate, no
//! network. The same prompt always gets the same answer, so tests can check it.

use std::time::Duration;

use super::{AiProvider, AiRequest, TokenStream};

/// Short words, so that a token averages about four characters with its
/// space, like the sub-word tokens of real models (English BPE runs at about
/// four characters per token): chunk sizes then match what real answers give.
const WORDS: &[&str] = &[
    "we", "send", "each", "new", "bit", "of", "the", "AI", "text", "as", "it", "is", "made,",
    "but", "in", "small", "sets:", "a", "set", "goes", "out", "when", "it", "has", "a", "few",
    "words", "or", "a", "tick", "has", "gone", "by.", "So", "all", "in", "the", "room", "see",
    "one", "flow", "in", "one", "order,", "and", "one", "who", "was", "away", "gets", "just",
    "what", "was", "lost,", "no", "gap", "and", "no", "dup.",
];

pub struct DemoProvider {
    tokens_per_sec: u32,
    answer_tokens: u32,
}

impl DemoProvider {
    pub fn new(tokens_per_sec: u32, answer_tokens: u32) -> Self {
        Self {
            tokens_per_sec: tokens_per_sec.max(1),
            answer_tokens,
        }
    }
}

/// The demo answer to `prompt`, as tokens: words with a trailing space, the last without.
pub fn demo_tokens(prompt: &str, count: u32) -> Vec<String> {
    let start = prompt
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    (0..count as usize)
        .map(|i| {
            let word = WORDS[(start + i) % WORDS.len()];
            if i + 1 == count as usize {
                word.to_owned()
            } else {
                format!("{word} ")
            }
        })
        .collect()
}

impl AiProvider for DemoProvider {
    fn answer(&self, request: AiRequest) -> TokenStream {
        let tokens = demo_tokens(&request.prompt, self.answer_tokens);
        let period = Duration::from_secs_f64(1.0 / f64::from(self.tokens_per_sec));
        Box::pin(async_stream::stream! {
            let mut tick = tokio::time::interval(period);
            for token in tokens {
                tick.tick().await;
                yield Ok(token);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn answers_are_deterministic_and_sized() {
        let a = demo_tokens("hello", 25);
        assert_eq!(a.len(), 25);
        assert_eq!(a, demo_tokens("hello", 25));
        assert_ne!(a, demo_tokens("other prompt", 25));
        assert!(!a.last().unwrap().ends_with(' '));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_arrive_at_the_configured_rate() {
        let provider = DemoProvider::new(50, 11);
        let started = tokio::time::Instant::now();
        let request = AiRequest {
            history: vec![],
            prompt: "p".into(),
        };
        let tokens: Vec<_> = provider.answer(request).collect().await;
        assert_eq!(tokens.len(), 11);
        // 11 ticks of 20 ms, the first immediate: 200 ms of virtual time.
        assert_eq!(started.elapsed(), Duration::from_millis(200));
        let text: String = tokens.into_iter().map(Result::unwrap).collect();
        assert_eq!(text, demo_tokens("p", 11).concat());
    }
}
