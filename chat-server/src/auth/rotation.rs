//! JWT keys rotate without a restart. The key file (a mounted Kubernetes
//! Secret is updated in place by the kubelet) is read again every
//! `--jwt-key-reload`; when its contents changed and the new keys are valid,
//! new handshakes verify with them. New contents that are not valid keys keep
//! the previous keys, with one warning per change. Connected sockets keep the
//! session they authenticated with, until their token expires.

use std::{
    hash::{DefaultHasher, Hasher},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use super::jwt::{Verifier, VerifierConfig};

/// The keys new handshakes are verified with.
#[derive(Debug)]
pub struct Keys {
    config: VerifierConfig,
    current: RwLock<Arc<Verifier>>,
    /// The key file's contents the last reload looked at.
    seen: Mutex<Option<u64>>,
}

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reload {
    Unchanged,
    Rotated,
    /// The file changed but holds no valid keys: the previous keys stay.
    Rejected(String),
}

impl Keys {
    /// Reads the keys once; start-up fails when they are not valid.
    pub fn load(config: VerifierConfig) -> anyhow::Result<Self> {
        let seen = fingerprint(&config);
        let verifier = Verifier::new(config.clone())?;
        Ok(Self {
            config,
            current: RwLock::new(Arc::new(verifier)),
            seen: Mutex::new(seen),
        })
    }

    pub fn current(&self) -> Arc<Verifier> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the key file again and switches to its keys if they changed.
    pub fn reload(&self) -> Reload {
        let now = fingerprint(&self.config);
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == now {
                return Reload::Unchanged;
            }
            *seen = now;
        }
        match Verifier::new(self.config.clone()) {
            Ok(verifier) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(verifier);
                Reload::Rotated
            }
            Err(error) => Reload::Rejected(format!("{error:#}")),
        }
    }

    /// Reloads every `every` for the life of the process, when the keys come
    /// from a file and `every` is not zero.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let Some(file) = self.config.keys.file().map(|f| f.display().to_string()) else {
            return;
        };
        if every.is_zero() {
            return;
        }
        let keys = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(keys) = keys.upgrade() else { return };
                match keys.reload() {
                    Reload::Unchanged => {}
                    Reload::Rotated => tracing::info!(%file, "JWT keys reloaded"),
                    Reload::Rejected(error) => tracing::warn!(
                        %file, %error,
                        "the JWT key file changed but holds no valid keys; keeping the previous keys"
                    ),
                }
            }
        });
    }
}

/// A hash of the key file's contents (`None` when it cannot be read).
fn fingerprint(config: &VerifierConfig) -> Option<u64> {
    let bytes = std::fs::read(config.keys.file()?).ok()?;
    let mut hasher = DefaultHasher::new();
    hasher.write(&bytes);
    Some(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::jwt::KeySource;

    fn keys_in(file: &std::path::Path) -> Keys {
        Keys::load(VerifierConfig {
            keys: KeySource::SecretFile(file.to_owned()),
            issuer: None,
            audience: None,
            rooms_claim: "rooms".into(),
            leeway: Duration::from_secs(5),
        })
        .unwrap()
    }

    #[test]
    fn a_changed_key_file_rotates_and_a_broken_one_keeps_the_old_keys() {
        let file = std::env::temp_dir().join(format!("chatscale-jwt-{}", std::process::id()));
        std::fs::write(&file, "a".repeat(32)).unwrap();
        let keys = keys_in(&file);
        let first = keys.current();
        assert_eq!(keys.reload(), Reload::Unchanged);
        assert!(Arc::ptr_eq(&first, &keys.current()));

        std::fs::write(&file, "b".repeat(32)).unwrap();
        assert_eq!(keys.reload(), Reload::Rotated);
        let second = keys.current();
        assert!(!Arc::ptr_eq(&first, &second));

        std::fs::write(&file, "too short").unwrap();
        let Reload::Rejected(why) = keys.reload() else {
            panic!("a too-short secret was accepted")
        };
        assert!(why.contains("at least 32 bytes"), "{why}");
        assert!(Arc::ptr_eq(&second, &keys.current()), "the old keys stay");
        assert_eq!(keys.reload(), Reload::Unchanged, "one warning per change");

        std::fs::remove_file(&file).unwrap();
        assert!(matches!(keys.reload(), Reload::Rejected(_)));
        assert!(Arc::ptr_eq(&second, &keys.current()));
    }
}
