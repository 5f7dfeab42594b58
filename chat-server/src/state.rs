//! What every handler shares: the room store, the publisher, the AI provider,
//! batching settings and metrics. Built once from the configuration.

use std::sync::Arc;

use anyhow::Context;

use crate::{
    admin::metrics::Metrics,
    ai::{AiProvider, AnthropicProvider, DemoProvider, OpenAiProvider, batcher::BatchConfig},
    answers::{AnswerLedger, Answers, Caps},
    auth::Auth,
    client_addr::ClientAddr,
    config::{AiProviderKind, Config},
    fanout::RoomSubscriptions,
    limits::Limits,
    publish::Publisher,
    secret::Secret,
    store::RoomStore,
};

// The variables holding the providers' API keys when no key file is given.
use chatscale_contract::env::{
    ANTHROPIC_API_KEY as ANTHROPIC_API_KEY_ENV, OPENAI_API_KEY as OPENAI_API_KEY_ENV,
};

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn RoomStore>,
    pub publisher: Arc<Publisher>,
    pub ai: Arc<dyn AiProvider>,
    pub batch: BatchConfig,
    pub metrics: Arc<Metrics>,
    /// Token verification (or auth off).
    pub auth: Arc<Auth>,
    /// Rate limits.
    pub limits: Arc<Limits>,
    /// Running AI answers: their places under the caps per user and per
    /// room, over every server, and this server's id among them.
    pub answers: Arc<Answers>,
    /// Where a connection comes from (the peer, or the client behind a trusted proxy).
    pub client_addr: Arc<ClientAddr>,
    /// The room channels this server listens on, from its members' rooms.
    pub room_subscriptions: Arc<RoomSubscriptions>,
}

impl AppState {
    pub fn new(
        config: &Config,
        store: Arc<dyn RoomStore>,
        answers: Arc<dyn AnswerLedger>,
        metrics: Arc<Metrics>,
        room_subscriptions: RoomSubscriptions,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            publisher: Arc::new(Publisher::new(store.clone(), metrics.clone())),
            store,
            ai: ai_provider(config)?,
            batch: BatchConfig {
                max_chars: config.batch_max_chars as usize,
                max_delay: config.batch_max_delay(),
            },
            metrics,
            auth: Arc::new(Auth::from_config(config)?),
            limits: Arc::new(Limits::new(config.limits())),
            answers: Answers::new(
                answers,
                Caps {
                    per_user: config.max_ai_answers_per_user,
                    per_room: config.max_ai_answers_per_room,
                },
            ),
            client_addr: Arc::new(ClientAddr::new(config.trusted_proxies.clone())),
            room_subscriptions: Arc::new(room_subscriptions),
        })
    }
}

fn ai_provider(config: &Config) -> anyhow::Result<Arc<dyn AiProvider>> {
    Ok(match config.ai_provider {
        AiProviderKind::Demo => Arc::new(DemoProvider::new(
            config.demo_tokens_per_sec,
            config.demo_answer_tokens,
        )),
        AiProviderKind::Openai => Arc::new(OpenAiProvider::new(
            &config.openai_base_url,
            &config.openai_model,
            api_key(
                "openai",
                config.openai_api_key_file.as_deref(),
                OPENAI_API_KEY_ENV,
            )?,
        )?),
        AiProviderKind::Anthropic => Arc::new(AnthropicProvider::new(
            &config.anthropic_base_url,
            &config.anthropic_model,
            config.anthropic_max_tokens,
            api_key(
                "anthropic",
                config.anthropic_api_key_file.as_deref(),
                ANTHROPIC_API_KEY_ENV,
            )?,
        )?),
    })
}

/// A provider's API key from its file, else from `env`; a warning without one.
fn api_key(
    provider: &str,
    file: Option<&std::path::Path>,
    env: &str,
) -> anyhow::Result<Option<Secret>> {
    let key =
        match file {
            Some(path) => Some(Secret::from_file(path).with_context(|| {
                format!("reading the {provider} API key file {}", path.display())
            })?),
            None => Secret::from_env(env),
        };
    if key.is_none() {
        tracing::warn!(
            "no API key for the {provider} provider (--{provider}-api-key-file or {env}); requests go without one"
        );
    }
    Ok(key)
}
