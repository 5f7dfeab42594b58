//! The flag table: every setting of a chat-server, as a command-line flag with an
//! environment-variable twin. The variable names, and the ranges and defaults of
//! the settings a ChatCluster sets, come from the contract crate the operator
//! builds against too; the tests below check that this table reads exactly the
//! contract's names and enforces exactly its ranges. Flag names are a contract
//! with users' scripts (see the README's Configuration section).

use std::{net::IpAddr, path::PathBuf, time::Duration};

use chatscale_contract::{env, ports, settings};
use clap::{Parser, ValueEnum};

/// Socket.IO v4 chat server for AI conversations: rooms, chat messages and AI
/// answers streamed in batched, sequence-numbered chunks.
#[derive(Parser, Debug, Clone)]
#[command(name = "chat-server", version, about, long_about = None)]
pub struct Config {
    /// Address both listeners bind to.
    #[arg(long, env = env::HOST, default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Public port: Socket.IO at /socket.io/ and the demo page at /. 0 picks a free port.
    #[arg(long, env = env::PORT, default_value_t = ports::PUBLIC)]
    pub port: u16,

    /// Admin port: /metrics, /healthz, /readyz. Never expose it to users. 0 picks a free port.
    #[arg(long, env = env::ADMIN_PORT, default_value_t = ports::ADMIN)]
    pub admin_port: u16,

    /// Redis URL (Redis 7+), e.g. `redis://:password@redis:6379/0`. Enables the Redis
    /// adapter and room store, so that many servers act as one. `protocol=resp3` is
    /// added when the URL does not choose a protocol. Without it: one server, in memory.
    #[arg(long, env = env::REDIS_URL, hide_env_values = true, group = "redis")]
    pub redis_url: Option<String>,

    /// File holding the Redis URL (it carries the password): the form to use
    /// where secrets are mounted as files, e.g. on Kubernetes.
    #[arg(long, env = env::REDIS_URL_FILE, group = "redis")]
    pub redis_url_file: Option<PathBuf>,

    /// Treat `--redis-url` as a seed node of a Redis Cluster: keys are spread over
    /// the shards (each room's keys share one slot) and the adapter uses sharded
    /// pub/sub (SPUBLISH / SSUBSCRIBE, Redis 7+).
    #[arg(
        long,
        env = env::REDIS_CLUSTER,
        default_value_t = false,
        requires = "redis"
    )]
    pub redis_cluster: bool,

    /// Prefix of every Redis key and pub/sub channel, so that several clusters can
    /// share one Redis without seeing each other. 1-64 characters of A-Z a-z 0-9 . _ : -
    #[arg(long, env = env::KEY_PREFIX, default_value = "chatscale", value_parser = key_prefix)]
    pub key_prefix: String,

    /// Which Redis pub/sub channels carry room events. `per-room`: one channel per
    /// room (`PREFIX:{room}:events`, sharded pub/sub on a Redis Cluster), which a
    /// server subscribes to only while it has a member of the room. `shared`: one
    /// channel that every server receives every room event on (the adapter's
    /// single sharded channel on a Redis Cluster); kept for comparison.
    #[arg(long, env = env::ROOM_CHANNELS, value_enum, default_value_t = RoomChannels::PerRoom)]
    pub room_channels: RoomChannels,

    /// Which model answers `ai-query`: the built-in `demo` (no network), any
    /// OpenAI-compatible `/v1/chat/completions` endpoint (`openai`), or Claude
    /// through the Anthropic Messages API (`anthropic`).
    #[arg(long, env = env::AI_PROVIDER, value_enum, default_value_t = AiProviderKind::Demo)]
    pub ai_provider: AiProviderKind,

    /// Demo model speed, in tokens per second.
    #[arg(long, env = env::DEMO_TOKENS_PER_SEC, default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub demo_tokens_per_sec: u32,

    /// Demo model answer length, in tokens (200 tokens at 50/s is a 4-second answer;
    /// 1500 makes a 30-second one).
    #[arg(long, env = env::DEMO_ANSWER_TOKENS, default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub demo_answer_tokens: u32,

    /// Flush a streamed chunk once it holds this many characters.
    #[arg(long, env = env::BATCH_MAX_CHARS, default_value_t = 48,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub batch_max_chars: u32,

    /// Flush a streamed chunk this many milliseconds after its first token at the latest.
    #[arg(long, env = env::BATCH_MAX_DELAY_MS, default_value_t = 50,
          value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub batch_max_delay_ms: u64,

    /// Base URL of the OpenAI-compatible API (OpenAI, vLLM, Ollama, LiteLLM ...).
    #[arg(
        long,
        env = env::OPENAI_BASE_URL,
        default_value = "https://api.openai.com/v1"
    )]
    pub openai_base_url: String,

    /// Model name sent to the OpenAI-compatible API.
    #[arg(long, env = env::OPENAI_MODEL, default_value = "gpt-4o-mini")]
    pub openai_model: String,

    /// File holding the API key for the `openai` provider. Without it the key is
    /// read from the CHAT_OPENAI_API_KEY environment variable (never from a flag,
    /// so it does not show in `ps`). The key never appears in logs, metrics or events.
    #[arg(long, env = env::OPENAI_API_KEY_FILE)]
    pub openai_api_key_file: Option<PathBuf>,

    /// Base URL of the Anthropic API (or a compatible gateway).
    #[arg(
        long,
        env = env::ANTHROPIC_BASE_URL,
        default_value = "https://api.anthropic.com"
    )]
    pub anthropic_base_url: String,

    /// Claude model name sent to the Anthropic API.
    #[arg(
        long,
        env = env::ANTHROPIC_MODEL,
        default_value = "claude-sonnet-4-5"
    )]
    pub anthropic_model: String,

    /// Longest answer the Anthropic API may write, in tokens (`max_tokens`).
    #[arg(long, env = env::ANTHROPIC_MAX_TOKENS, default_value_t = settings::ANTHROPIC_MAX_TOKENS.default,
          value_parser = clap::value_parser!(u32).range(settings::ANTHROPIC_MAX_TOKENS.bounds()))]
    pub anthropic_max_tokens: u32,

    /// File holding the API key for the `anthropic` provider. Without it the key
    /// is read from the CHAT_ANTHROPIC_API_KEY environment variable (never from a
    /// flag). The key never appears in logs, metrics or events.
    #[arg(long, env = env::ANTHROPIC_API_KEY_FILE)]
    pub anthropic_api_key_file: Option<PathBuf>,

    /// How many recent turns of a room's conversation go into an AI prompt.
    #[arg(long, env = env::HISTORY_TURNS, default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(0..=1_000))]
    pub history_turns: u32,

    /// How many recent events each room keeps in its log (for replay on reconnect).
    #[arg(long, env = env::ROOM_LOG_LEN, default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub room_log_len: u32,

    /// Largest Engine.IO payload accepted, in bytes, on both transports (a long-polling
    /// POST body, a WebSocket message or frame). Larger ones are refused by the transport.
    #[arg(long, env = env::MAX_PAYLOAD_BYTES, default_value_t = 131_072,
          value_parser = clap::value_parser!(u64).range(1_024..=16_777_216))]
    pub max_payload_bytes: u64,

    /// File holding the bearer token that guards the drain and shed APIs on the
    /// admin port. Without it the token is read from CHAT_ADMIN_TOKEN; with
    /// neither, both refuse every request (SIGTERM still drains).
    #[arg(long, env = env::ADMIN_TOKEN_FILE)]
    pub admin_token_file: Option<PathBuf>,

    /// How long a drain may take before the server exits anyway (SIGTERM), e.g. `300s`, `5m`.
    #[arg(long, env = env::DRAIN_TIMEOUT, default_value = "300s", value_parser = duration)]
    pub drain_timeout: Duration,

    /// At most this many clients are moved per second while draining, so
    /// that they do not all reconnect elsewhere at once.
    #[arg(long, env = env::DRAIN_RATE, default_value_t = settings::DRAIN_RATE.default,
          value_parser = clap::value_parser!(u32).range(settings::DRAIN_RATE.bounds()))]
    pub drain_rate: u32,

    /// Clients told to move (a drain or a shed) are advised a random delay up to
    /// this many milliseconds before they reconnect.
    #[arg(long, env = env::DRAIN_JITTER_MS, default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    pub drain_jitter_ms: u64,

    /// Log format on stderr.
    #[arg(long, env = env::LOG_FORMAT, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Whether clients must present a JWT at the Socket.IO handshake (`auth.token`
    /// or an `Authorization: Bearer` header). Default: `required` when a JWT key
    /// is configured, `off` (demo mode: anyone may use any room) otherwise.
    #[arg(long, env = env::AUTH, value_enum)]
    pub auth: Option<AuthMode>,

    /// File holding the HS256 shared secret (at least 32 bytes). Without it the
    /// secret may come from CHAT_JWT_SECRET (never from a flag).
    #[arg(
        long,
        env = env::JWT_SECRET_FILE,
        conflicts_with = "jwt_public_key_file"
    )]
    pub jwt_secret_file: Option<PathBuf>,

    /// File holding the RS256/ES256 public key(s): one PEM public key, or a JWKS
    /// document (`{"keys": [...]}`, matched by `kid`). Read from disk, never
    /// fetched from the network.
    #[arg(long, env = env::JWT_PUBLIC_KEY_FILE)]
    pub jwt_public_key_file: Option<PathBuf>,

    /// How often the JWT key file is read again, so rotated keys (e.g. an
    /// updated Kubernetes Secret) take effect without a restart; `0` reads it
    /// only at start-up. Invalid new contents keep the previous keys.
    #[arg(long, env = env::JWT_KEY_RELOAD, default_value = "30s", value_parser = duration)]
    pub jwt_key_reload: Duration,

    /// Required `iss` of every token, when set.
    #[arg(long, env = env::JWT_ISSUER)]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of every token (one of its values), when set.
    #[arg(long, env = env::JWT_AUDIENCE)]
    pub jwt_audience: Option<String>,

    /// The claim listing the rooms a token grants (`*` suffix wildcards, e.g.
    /// `["team-42:*", "support"]`).
    #[arg(long, env = env::JWT_ROOMS_CLAIM, default_value = "rooms")]
    pub jwt_rooms_claim: String,

    /// Clock-skew allowance for `exp` and `nbf`, e.g. `5s`.
    #[arg(long, env = env::JWT_LEEWAY, default_value = "5s", value_parser = duration)]
    pub jwt_leeway: Duration,

    /// Browser origins allowed to connect, comma-separated (e.g.
    /// `https://chat.example.com`), or `*` for any. The server's own origin (the
    /// demo page) is always allowed; requests without an Origin header
    /// (non-browser clients) are not affected.
    #[arg(long, env = env::ALLOWED_ORIGINS, value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Events per second a socket may send (0: no limit); past it, events are
    /// answered `rate_limited`.
    #[arg(long, env = env::EVENTS_PER_SEC, default_value_t = settings::EVENTS_PER_SEC.default,
          value_parser = clap::value_parser!(u32).range(settings::EVENTS_PER_SEC.bounds()))]
    pub events_per_sec: u32,

    /// Events a socket may send at once above its rate.
    #[arg(long, env = env::EVENTS_BURST, default_value_t = settings::EVENTS_BURST.default,
          value_parser = clap::value_parser!(u32).range(settings::EVENTS_BURST.bounds()))]
    pub events_burst: u32,

    /// Events per second an authenticated user may send over all their
    /// sockets on one server (0: no limit).
    #[arg(long, env = env::USER_EVENTS_PER_SEC, default_value_t = settings::USER_EVENTS_PER_SEC.default,
          value_parser = clap::value_parser!(u32).range(settings::USER_EVENTS_PER_SEC.bounds()))]
    pub user_events_per_sec: u32,

    /// A socket whose events are refused this many times at once, or more
    /// often than that every 10 seconds, is disconnected (0: never).
    #[arg(long, env = env::FLOOD_DISCONNECT_AFTER, default_value_t = settings::FLOOD_DISCONNECT_AFTER.default,
          value_parser = clap::value_parser!(u32).range(settings::FLOOD_DISCONNECT_AFTER.bounds()))]
    pub flood_disconnect_after: u32,

    /// New Socket.IO connections per minute from one source address (0: no
    /// limit). Behind a proxy every client has the proxy's address: leave it off
    /// there, or limit at the proxy.
    #[arg(long, env = env::CONNECTIONS_PER_MINUTE_PER_IP, default_value_t = settings::CONNECTIONS_PER_MINUTE_PER_IP.default,
          value_parser = clap::value_parser!(u32).range(settings::CONNECTIONS_PER_MINUTE_PER_IP.bounds()))]
    pub connections_per_minute_per_ip: u32,

    /// Proxies (addresses or CIDR ranges, comma-separated, e.g. the pod
    /// network `10.0.0.0/8`) whose `X-Forwarded-For` names the client, so the
    /// per-address limit sees clients instead of the load balancer. Anyone
    /// else's `X-Forwarded-For` is ignored.
    #[arg(long, env = env::TRUSTED_PROXIES, value_delimiter = ',', value_parser = crate::client_addr::parse_net)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// AI answers one user (one socket, with auth off) may have running at once,
    /// counted over every server that shares the Redis store.
    #[arg(long, env = env::MAX_AI_ANSWERS_PER_USER, default_value_t = settings::MAX_AI_ANSWERS_PER_USER.default,
          value_parser = clap::value_parser!(u32).range(settings::MAX_AI_ANSWERS_PER_USER.bounds()))]
    pub max_ai_answers_per_user: u32,

    /// AI answers one room may have running at once, counted over every server
    /// that shares the Redis store.
    #[arg(long, env = env::MAX_AI_ANSWERS_PER_ROOM, default_value_t = settings::MAX_AI_ANSWERS_PER_ROOM.default,
          value_parser = clap::value_parser!(u32).range(settings::MAX_AI_ANSWERS_PER_ROOM.bounds()))]
    pub max_ai_answers_per_room: u32,

    /// Rooms one socket may be in at once.
    #[arg(long, env = env::MAX_ROOMS_PER_SOCKET, default_value_t = settings::MAX_ROOMS_PER_SOCKET.default,
          value_parser = clap::value_parser!(u32).range(settings::MAX_ROOMS_PER_SOCKET.bounds()))]
    pub max_rooms_per_socket: u32,
}

/// Which pub/sub channels carry room events between servers (crate::fanout).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomChannels {
    /// One channel per room, subscribed while the server has a member in it.
    PerRoom,
    /// One channel for every room, subscribed by every server.
    Shared,
}

/// Whether the Socket.IO handshake needs a JWT.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Demo mode: no token, any client may use any room.
    Off,
    /// Every connection needs a valid token; rooms come from its rooms claim.
    Required,
}

/// The model behind `ai-query`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AiProviderKind {
    /// Built in, deterministic, no network.
    Demo,
    /// Any OpenAI-compatible streaming chat completions endpoint.
    Openai,
    /// Claude through the Anthropic Messages API.
    Anthropic,
}

/// How log lines are written.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// A duration such as `300s`, `5m` or `1m30s`; a bare number means seconds.
fn duration(value: &str) -> Result<Duration, String> {
    match value.parse::<u64>() {
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => humantime::parse_duration(value).map_err(|e| e.to_string()),
    }
}

fn key_prefix(value: &str) -> Result<String, String> {
    settings::check_key_prefix(value).map(|()| value.to_owned())
}

impl Config {
    pub fn batch_max_delay(&self) -> Duration {
        Duration::from_millis(self.batch_max_delay_ms)
    }

    /// The Redis URL from `--redis-url` or `--redis-url-file`; `None`: in memory.
    pub fn redis_url(&self) -> anyhow::Result<Option<crate::secret::Secret>> {
        use anyhow::Context;
        match (&self.redis_url, &self.redis_url_file) {
            (Some(url), _) => Ok(Some(crate::secret::Secret::new(url.clone()))),
            (None, Some(path)) => crate::secret::Secret::from_file(path)
                .map(Some)
                .with_context(|| format!("reading the Redis URL file {}", path.display())),
            (None, None) => Ok(None),
        }
    }

    pub fn limits(&self) -> crate::limits::LimitsConfig {
        crate::limits::LimitsConfig {
            events_per_sec: self.events_per_sec,
            events_burst: self.events_burst,
            user_events_per_sec: self.user_events_per_sec,
            flood_disconnect_after: self.flood_disconnect_after,
            connections_per_minute_per_ip: self.connections_per_minute_per_ip,
            max_ai_answers_per_user: self.max_ai_answers_per_user,
            max_ai_answers_per_room: self.max_ai_answers_per_room,
            max_rooms_per_socket: self.max_rooms_per_socket as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design_table() {
        let config = Config::try_parse_from(["chat-server"]).unwrap();
        assert_eq!(config.port, 3000);
        assert_eq!(config.admin_port, 9090);
        assert_eq!(config.ai_provider, AiProviderKind::Demo);
        assert_eq!(config.demo_tokens_per_sec, 50);
        assert_eq!(config.demo_answer_tokens, 200);
        assert_eq!(config.batch_max_chars, 48);
        assert_eq!(config.batch_max_delay_ms, 50);
        assert_eq!(config.key_prefix, "chatscale");
        assert_eq!(config.redis_url, None);
        assert_eq!(config.drain_timeout, Duration::from_secs(300));
        assert_eq!(config.drain_rate, 500);
        assert_eq!(config.auth, None);
        assert_eq!(config.jwt_rooms_claim, "rooms");
        assert!(config.allowed_origins.is_empty());
        assert_eq!(config.max_rooms_per_socket, 32);
    }

    #[test]
    fn the_redis_url_comes_from_a_flag_or_a_file() {
        let path = std::env::temp_dir().join(format!("redis-url-test-{}", std::process::id()));
        std::fs::write(&path, "redis://:pw@r:6379/0\n").unwrap();
        let config = Config::try_parse_from([
            "chat-server",
            "--redis-url-file",
            path.to_str().unwrap(),
            "--redis-cluster",
        ])
        .unwrap();
        assert_eq!(
            config.redis_url().unwrap().unwrap().expose(),
            "redis://:pw@r:6379/0"
        );
        std::fs::remove_file(&path).unwrap();
        assert!(config.redis_url().is_err(), "a missing file is an error");
        assert!(
            Config::try_parse_from([
                "chat-server",
                "--redis-url",
                "redis://a",
                "--redis-url-file",
                "f"
            ])
            .is_err()
        );
        assert!(Config::try_parse_from(["chat-server", "--redis-cluster"]).is_err());
        assert!(
            Config::try_parse_from(["chat-server"])
                .unwrap()
                .redis_url()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn allowed_origins_are_a_comma_list() {
        let config = Config::try_parse_from([
            "chat-server",
            "--allowed-origins",
            "https://a.example,https://b.example",
        ])
        .unwrap();
        assert_eq!(
            config.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        assert!(
            Config::try_parse_from([
                "chat-server",
                "--jwt-secret-file",
                "a",
                "--jwt-public-key-file",
                "b"
            ])
            .is_err()
        );
    }

    #[test]
    fn durations_take_units_or_seconds() {
        let parse = |v: &str| {
            Config::try_parse_from(["chat-server", "--drain-timeout", v]).map(|c| c.drain_timeout)
        };
        assert_eq!(parse("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1500ms").unwrap(), Duration::from_millis(1500));
        assert!(parse("soon").is_err());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert!(Config::try_parse_from(["chat-server", "--demo-tokens-per-sec", "0"]).is_err());
        assert!(Config::try_parse_from(["chat-server", "--ai-provider", "gpt"]).is_err());
        assert!(Config::try_parse_from(["chat-server", "--port", "70000"]).is_err());
        assert!(Config::try_parse_from(["chat-server", "--key-prefix", "a{b}"]).is_err());
        assert!(Config::try_parse_from(["chat-server", "--key-prefix", ""]).is_err());
    }

    /// The flag that reads the `CHAT_*` variable `name`.
    fn arg_of(name: &str) -> clap::Arg {
        use clap::CommandFactory;
        Config::command()
            .get_arguments()
            .find(|arg| arg.get_env().is_some_and(|env| env == name))
            .unwrap_or_else(|| panic!("no flag reads {name}"))
            .clone()
    }

    #[test]
    fn the_flags_read_exactly_the_contracts_variables() {
        use clap::CommandFactory;
        let read: std::collections::BTreeSet<String> = Config::command()
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .collect();
        let contract: std::collections::BTreeSet<String> = env::ALL
            .iter()
            .filter(|name| !env::WITHOUT_FLAG.contains(name))
            .map(|name| name.to_string())
            .collect();
        assert_eq!(read, contract);
    }

    #[test]
    fn the_flags_take_the_contracts_ranges_and_defaults() {
        for count in settings::COUNTS {
            let arg = arg_of(count.env);
            let flag = format!("--{}", arg.get_long().expect("a long flag"));
            let parse =
                |value: i64| Config::try_parse_from(["chat-server", &flag, &value.to_string()]);
            assert!(parse(count.min.into()).is_ok(), "{flag} {}", count.min);
            assert!(parse(count.max.into()).is_ok(), "{flag} {}", count.max);
            assert!(
                parse(i64::from(count.max) + 1).is_err(),
                "{flag} above its range"
            );
            // (Below 0 any u32 flag refuses, range or not.)
            if count.min > 0 {
                assert!(
                    parse(i64::from(count.min) - 1).is_err(),
                    "{flag} below its range"
                );
            }
            assert_eq!(
                arg.get_default_values(),
                [count.default.to_string().as_str()],
                "{flag}'s default"
            );
        }
        let defaults = Config::try_parse_from(["chat-server"]).unwrap();
        assert_eq!(
            defaults.drain_timeout,
            Duration::from_secs(settings::DRAIN_TIMEOUT_SECONDS.default.into())
        );
    }

    #[test]
    fn command_definition_is_consistent() {
        use clap::CommandFactory;
        Config::command().debug_assert();
    }
}
