//! The settings a ChatCluster sets on its pods, with the one range and
//! default both sides use: the CRD's CEL rules are written from these, and
//! chat-server's flag parser refuses what they refuse. Other flags are
//! chat-server's own; a ChatCluster does not set them.

use std::ops::RangeInclusive;

use crate::env;

/// A whole-number setting: its variable, the values it accepts, its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub env: &'static str,
    pub min: u32,
    pub max: u32,
    pub default: u32,
}

impl Count {
    /// The accepted values, as clap's `value_parser!(u32).range(..)` takes them.
    pub const fn bounds(&self) -> RangeInclusive<i64> {
        self.min as i64..=self.max as i64
    }

    /// A CEL rule for the CRD field `field` (e.g. `limits.eventsPerSec`) and
    /// its message.
    pub fn cel(&self, field: &str) -> (String, String) {
        let (min, max) = (self.min, self.max);
        (
            format!("self >= {min} && self <= {max}"),
            format!("{field} must be {min}..{max}"),
        )
    }
}

const fn count(env: &'static str, min: u32, max: u32, default: u32) -> Count {
    Count {
        env,
        min,
        max,
        default,
    }
}

macro_rules! counts {
    ($($name:ident = ($min:expr, $max:expr, default $default:expr);)*) => {
        $(pub const $name: Count = count(env::$name, $min, $max, $default);)*
        /// Every [`Count`] above (chat-server's config tests walk it).
        pub const COUNTS: &[Count] = &[$($name),*];
    };
}

// Each count's variable is the `env` constant of the same name.
counts! {
    EVENTS_PER_SEC = (0, 1_000_000, default 200);
    EVENTS_BURST = (0, 1_000_000, default 400);
    USER_EVENTS_PER_SEC = (0, 1_000_000, default 400);
    FLOOD_DISCONNECT_AFTER = (0, 1_000_000, default 100);
    CONNECTIONS_PER_MINUTE_PER_IP = (0, 1_000_000, default 0);
    MAX_AI_ANSWERS_PER_USER = (1, 100_000, default 4);
    MAX_AI_ANSWERS_PER_ROOM = (1, 100_000, default 8);
    MAX_ROOMS_PER_SOCKET = (1, 100_000, default 32);
    ANTHROPIC_MAX_TOKENS = (1, 128_000, default 1024);
    DRAIN_RATE = (1, 1_000_000, default 500);
}

/// Seconds a drain may take (`CHAT_DRAIN_TIMEOUT`). chat-server takes any
/// duration (`300s`, `5m`); a ChatCluster gives whole seconds in this range.
pub const DRAIN_TIMEOUT_SECONDS: Count = count(env::DRAIN_TIMEOUT, 1, 3600, 300);

/// Longest key prefix (`CHAT_KEY_PREFIX`), the start of every Redis key and
/// channel name.
pub const KEY_PREFIX_MAX_LEN: usize = 64;

/// Whether `prefix` may prefix Redis keys: 1 to [`KEY_PREFIX_MAX_LEN`]
/// characters of `A-Z a-z 0-9 . _ : -` (no braces, which would change a key's
/// Redis Cluster hash slot).
pub fn check_key_prefix(prefix: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
    if (1..=KEY_PREFIX_MAX_LEN).contains(&prefix.len()) && prefix.chars().all(allowed) {
        Ok(())
    } else {
        Err(format!(
            "1-{KEY_PREFIX_MAX_LEN} characters of A-Z a-z 0-9 . _ : -"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_has_its_default_in_range_and_its_own_variable() {
        let mut seen = std::collections::HashSet::new();
        for count in COUNTS.iter().chain([&DRAIN_TIMEOUT_SECONDS]) {
            assert!(count.bounds().contains(&count.default.into()), "{count:?}");
            assert!(count.min <= count.max, "{count:?}");
            assert!(env::ALL.contains(&count.env), "{count:?}");
            assert!(seen.insert(count.env), "{} twice", count.env);
        }
    }

    #[test]
    fn cel_rules_say_the_range() {
        assert_eq!(
            EVENTS_PER_SEC.cel("limits.eventsPerSec"),
            (
                "self >= 0 && self <= 1000000".to_owned(),
                "limits.eventsPerSec must be 0..1000000".to_owned()
            )
        );
    }

    #[test]
    fn key_prefixes() {
        assert!(check_key_prefix("apps.team-1:chat_2").is_ok());
        assert!(check_key_prefix(&"a".repeat(KEY_PREFIX_MAX_LEN)).is_ok());
        for bad in ["", "a{b}", "a b", &"a".repeat(KEY_PREFIX_MAX_LEN + 1)] {
            assert!(check_key_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
