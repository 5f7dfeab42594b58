//! The names of chat-server's environment variables. Each flag of
//! chat-server has a `CHAT_*` twin (`--drain-rate` and `CHAT_DRAIN_RATE`);
//! secrets have variables but no flags, so they never show in `ps`.

macro_rules! names {
    ($($(#[$doc:meta])* $name:ident = $value:literal;)*) => {
        $($(#[$doc])* pub const $name: &str = $value;)*
        /// Every name above.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

names! {
    HOST = "CHAT_HOST";
    PORT = "CHAT_PORT";
    ADMIN_PORT = "CHAT_ADMIN_PORT";
    REDIS_URL = "CHAT_REDIS_URL";
    REDIS_URL_FILE = "CHAT_REDIS_URL_FILE";
    REDIS_CLUSTER = "CHAT_REDIS_CLUSTER";
    KEY_PREFIX = "CHAT_KEY_PREFIX";
    ROOM_CHANNELS = "CHAT_ROOM_CHANNELS";
    AI_PROVIDER = "CHAT_AI_PROVIDER";
    DEMO_TOKENS_PER_SEC = "CHAT_DEMO_TOKENS_PER_SEC";
    DEMO_ANSWER_TOKENS = "CHAT_DEMO_ANSWER_TOKENS";
    BATCH_MAX_CHARS = "CHAT_BATCH_MAX_CHARS";
    BATCH_MAX_DELAY_MS = "CHAT_BATCH_MAX_DELAY_MS";
    OPENAI_BASE_URL = "CHAT_OPENAI_BASE_URL";
    OPENAI_MODEL = "CHAT_OPENAI_MODEL";
    OPENAI_API_KEY_FILE = "CHAT_OPENAI_API_KEY_FILE";
    /// Secret: no flag.
    OPENAI_API_KEY = "CHAT_OPENAI_API_KEY";
    ANTHROPIC_BASE_URL = "CHAT_ANTHROPIC_BASE_URL";
    ANTHROPIC_MODEL = "CHAT_ANTHROPIC_MODEL";
    ANTHROPIC_MAX_TOKENS = "CHAT_ANTHROPIC_MAX_TOKENS";
    ANTHROPIC_API_KEY_FILE = "CHAT_ANTHROPIC_API_KEY_FILE";
    /// Secret: no flag.
    ANTHROPIC_API_KEY = "CHAT_ANTHROPIC_API_KEY";
    HISTORY_TURNS = "CHAT_HISTORY_TURNS";
    ROOM_LOG_LEN = "CHAT_ROOM_LOG_LEN";
    MAX_PAYLOAD_BYTES = "CHAT_MAX_PAYLOAD_BYTES";
    ADMIN_TOKEN_FILE = "CHAT_ADMIN_TOKEN_FILE";
    /// Secret: no flag.
    ADMIN_TOKEN = "CHAT_ADMIN_TOKEN";
    DRAIN_TIMEOUT = "CHAT_DRAIN_TIMEOUT";
    DRAIN_RATE = "CHAT_DRAIN_RATE";
    DRAIN_JITTER_MS = "CHAT_DRAIN_JITTER_MS";
    LOG_FORMAT = "CHAT_LOG_FORMAT";
    /// The log filter (`info`, `chat_server=debug` ...): read by the logger, no flag.
    LOG = "CHAT_LOG";
    AUTH = "CHAT_AUTH";
    JWT_SECRET_FILE = "CHAT_JWT_SECRET_FILE";
    /// Secret: no flag.
    JWT_SECRET = "CHAT_JWT_SECRET";
    JWT_PUBLIC_KEY_FILE = "CHAT_JWT_PUBLIC_KEY_FILE";
    JWT_KEY_RELOAD = "CHAT_JWT_KEY_RELOAD";
    JWT_ISSUER = "CHAT_JWT_ISSUER";
    JWT_AUDIENCE = "CHAT_JWT_AUDIENCE";
    JWT_ROOMS_CLAIM = "CHAT_JWT_ROOMS_CLAIM";
    JWT_LEEWAY = "CHAT_JWT_LEEWAY";
    ALLOWED_ORIGINS = "CHAT_ALLOWED_ORIGINS";
    EVENTS_PER_SEC = "CHAT_EVENTS_PER_SEC";
    EVENTS_BURST = "CHAT_EVENTS_BURST";
    USER_EVENTS_PER_SEC = "CHAT_USER_EVENTS_PER_SEC";
    FLOOD_DISCONNECT_AFTER = "CHAT_FLOOD_DISCONNECT_AFTER";
    CONNECTIONS_PER_MINUTE_PER_IP = "CHAT_CONNECTIONS_PER_MINUTE_PER_IP";
    TRUSTED_PROXIES = "CHAT_TRUSTED_PROXIES";
    MAX_AI_ANSWERS_PER_USER = "CHAT_MAX_AI_ANSWERS_PER_USER";
    MAX_AI_ANSWERS_PER_ROOM = "CHAT_MAX_AI_ANSWERS_PER_ROOM";
    MAX_ROOMS_PER_SOCKET = "CHAT_MAX_ROOMS_PER_SOCKET";
}

/// The variables chat-server reads itself rather than through a flag: the
/// secrets and the log filter.
pub const WITHOUT_FLAG: &[&str] = &[
    OPENAI_API_KEY,
    ANTHROPIC_API_KEY,
    ADMIN_TOKEN,
    JWT_SECRET,
    LOG,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_distinct_and_prefixed() {
        let mut seen = std::collections::HashSet::new();
        for name in ALL {
            assert!(name.starts_with("CHAT_"), "{name}");
            assert!(seen.insert(name), "{name} twice");
        }
        assert!(WITHOUT_FLAG.iter().all(|name| ALL.contains(name)));
    }
}
