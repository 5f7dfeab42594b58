//! Leader election on a `coordination.k8s.io/v1` Lease, so that two operator
//! replicas are safe: only the holder reconciles; a standby takes over when
//! the holder stops renewing for `LEASE_SECONDS`.

use std::time::Duration;

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

const LEASE_SECONDS: i32 = 15;
const RENEW: Duration = Duration::from_secs(5);

pub struct Elector {
    leases: Api<Lease>,
    name: String,
    identity: String,
}

/// What to do with a Lease as it stands: a pure decision.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nobody holds it, it expired, or we hold it: write ourselves in.
    Take,
    /// Someone else holds it and renews it.
    Wait,
}

pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> Step {
    let Some(spec) = lease else { return Step::Take };
    let holder = spec.holder_identity.as_deref().unwrap_or("");
    if holder.is_empty() || holder == identity {
        return Step::Take;
    }
    let seconds = i64::from(spec.lease_duration_seconds.unwrap_or(LEASE_SECONDS));
    match &spec.renew_time {
        Some(MicroTime(renewed)) if *renewed + SignedDuration::from_secs(seconds) > now => {
            Step::Wait
        }
        _ => Step::Take,
    }
}

impl Elector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            leases: Api::namespaced(client, namespace),
            name: name.into(),
            identity: identity.into(),
        }
    }

    /// Returns once this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_take().await {
                Ok(true) => {
                    tracing::info!(identity = self.identity, "leading");
                    return;
                }
                Ok(false) => tracing::debug!("another replica leads; standing by"),
                Err(error) => tracing::warn!(%error, "lease check failed"),
            }
            tokio::time::sleep(RENEW).await;
        }
    }

    /// Renews forever; returns when leadership is lost.
    pub async fn hold(&self) {
        loop {
            tokio::time::sleep(RENEW).await;
            match self.try_take().await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!("lost the lease");
                    return;
                }
                Err(error) => tracing::warn!(%error, "lease renewal failed; retrying"),
            }
        }
    }

    /// One attempt: true when we hold the Lease afterwards.
    async fn try_take(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.leases.get_opt(&self.name).await?;
        if decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        ) == Step::Wait
        {
            return Ok(false);
        }
        let spec = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(LEASE_SECONDS),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        };
        match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        ..Default::default()
                    },
                    spec: Some(spec),
                };
                self.leases.create(&PostParams::default(), &lease).await?;
            }
            // Replace carries the resourceVersion we read: a concurrent writer makes it fail.
            Some(mut lease) => {
                lease.spec = Some(spec);
                self.leases
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await?;
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
            ..Default::default()
        }
    }

    #[test]
    fn leadership_decisions() {
        let now = Timestamp::from_second(1_000).unwrap();
        assert_eq!(decide(None, "a", now), Step::Take);
        assert_eq!(
            decide(Some(&held_by("a", 999)), "a", now),
            Step::Take,
            "renew our own"
        );
        assert_eq!(
            decide(Some(&held_by("b", 990)), "a", now),
            Step::Wait,
            "b renews"
        );
        assert_eq!(
            decide(Some(&held_by("b", 980)), "a", now),
            Step::Take,
            "b expired"
        );
    }
}
