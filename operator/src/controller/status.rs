//! The status a ChatCluster shows, computed from what was observed: a pure
//! function, so every condition and reason is tested without a cluster.

use crate::{
    api::{ChatCluster, ChatClusterStatus},
    resources::names,
};
use k8s_openapi::{
    api::apps::v1::Deployment,
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

/// What reconcile saw.
pub enum Observed<'a> {
    /// Objects applied; the chat Deployment as it stands (if it exists yet).
    Applied(Option<&'a Deployment>),
    /// The spec cannot be built: why.
    Invalid(&'a str),
}

pub fn status(cc: &ChatCluster, observed: Observed<'_>, now: Timestamp) -> ChatClusterStatus {
    let previous = cc.status.clone().unwrap_or_default();
    let generation = cc.metadata.generation;
    // Load figures belong to the autoscaler (its own field manager): not set here.
    let mut status = ChatClusterStatus {
        observed_generation: generation,
        selector: Some(names::selector_string(cc, names::CHAT)),
        desired_replicas: Some(cc.spec.replicas),
        ..Default::default()
    };
    let (ready, progressing, degraded) = match observed {
        Observed::Invalid(message) => (
            (false, "InvalidSpec", message.to_owned()),
            (
                false,
                "InvalidSpec",
                "nothing is applied until the spec is fixed".to_owned(),
            ),
            (true, "InvalidSpec", message.to_owned()),
        ),
        Observed::Applied(deployment) => {
            let deployment_status = deployment
                .and_then(|d| d.status.clone())
                .unwrap_or_default();
            status.replicas = deployment_status.replicas.unwrap_or(0);
            status.ready_replicas = deployment_status.ready_replicas.unwrap_or(0);
            let updated = deployment_status.updated_replicas.unwrap_or(0);
            let all_ready =
                status.ready_replicas >= cc.spec.replicas && status.replicas == cc.spec.replicas;
            let rolling = updated < cc.spec.replicas || !all_ready;
            (
                if status.ready_replicas > 0 {
                    (
                        true,
                        "PodsReady",
                        format!(
                            "{} of {} chat-server pods ready",
                            status.ready_replicas, cc.spec.replicas
                        ),
                    )
                } else {
                    (
                        false,
                        "NoPodReady",
                        "no chat-server pod is ready yet".to_owned(),
                    )
                },
                if rolling {
                    (
                        true,
                        "RollingOut",
                        format!("{updated} of {} pods updated", cc.spec.replicas),
                    )
                } else {
                    (
                        false,
                        "Stable",
                        "every pod runs the current spec".to_owned(),
                    )
                },
                (false, "Reconciled", "all objects applied".to_owned()),
            )
        }
    };
    let ceiling = i64::from(cc.spec.autoscaling.redis_ops_ceiling);
    let saturated = match previous.redis_ops_per_sec {
        Some(ops) if ops > ceiling => (
            true,
            "AboveCeiling",
            format!(
                "Redis runs {ops} ops/s, above the {ceiling} ceiling: consider Redis Cluster mode (redis.external.cluster)"
            ),
        ),
        _ => (
            false,
            "BelowCeiling",
            format!("Redis ops/s within the {ceiling} ceiling"),
        ),
    };
    status.conditions = [
        ("Ready", ready),
        ("Progressing", progressing),
        ("Degraded", degraded),
        ("RedisSaturated", saturated),
    ]
    .into_iter()
    .map(|(kind, (on, reason, message))| {
        condition(
            &previous.conditions,
            kind,
            on,
            reason,
            message,
            generation,
            now,
        )
    })
    .collect();
    status
}

/// A condition; its transition time moves only when its status changes.
fn condition(
    previous: &[Condition],
    type_: &str,
    on: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if on { "True" } else { "False" }.to_owned();
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    fn cc() -> ChatCluster {
        let mut cc: ChatCluster = serde_saphyr::from_str(
            "apiVersion: chatscale.dev/v1alpha1\nkind: ChatCluster\nmetadata: {name: team, namespace: apps, generation: 3}\nspec: {replicas: 2, routing: {host: chat.example.com}}",
        )
        .unwrap();
        cc.status = None;
        cc
    }

    fn find<'a>(status: &'a ChatClusterStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn ready_when_pods_are_ready_and_stable_when_all_updated() {
        let deployment = Deployment {
            status: Some(DeploymentStatus {
                replicas: Some(2),
                ready_replicas: Some(2),
                updated_replicas: Some(2),
                ..Default::default()
            }),
            ..Default::default()
        };
        let status = status(
            &cc(),
            Observed::Applied(Some(&deployment)),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!((status.replicas, status.ready_replicas), (2, 2));
        assert_eq!(find(&status, "Ready").status, "True");
        assert_eq!(find(&status, "Progressing").status, "False");
        assert_eq!(find(&status, "Degraded").status, "False");
        assert!(
            status
                .selector
                .unwrap()
                .contains("app.kubernetes.io/component=chat")
        );
    }

    #[test]
    fn progressing_while_the_deployment_is_new() {
        let status = status(&cc(), Observed::Applied(None), Timestamp::UNIX_EPOCH);
        assert_eq!(find(&status, "Ready").reason, "NoPodReady");
        assert_eq!(find(&status, "Progressing").status, "True");
    }

    #[test]
    fn an_invalid_spec_is_degraded_with_its_message() {
        let status = status(
            &cc(),
            Observed::Invalid("min above max"),
            Timestamp::UNIX_EPOCH,
        );
        let degraded = find(&status, "Degraded");
        assert_eq!(
            (degraded.status.as_str(), degraded.reason.as_str()),
            ("True", "InvalidSpec")
        );
        assert_eq!(degraded.message, "min above max");
        assert_eq!(find(&status, "Ready").status, "False");
    }

    #[test]
    fn redis_above_the_ceiling_is_saturated() {
        let mut cluster = cc();
        cluster.status = Some(ChatClusterStatus {
            redis_ops_per_sec: Some(60_000),
            ..Default::default()
        });
        let status = status(&cluster, Observed::Applied(None), Timestamp::UNIX_EPOCH);
        let saturated = find(&status, "RedisSaturated");
        assert_eq!(
            (saturated.status.as_str(), saturated.reason.as_str()),
            ("True", "AboveCeiling")
        );
        assert!(saturated.message.contains("Redis Cluster"));
        let calm = status_of(&cc());
        assert_eq!(find(&calm, "RedisSaturated").status, "False");
    }

    fn status_of(cluster: &ChatCluster) -> ChatClusterStatus {
        status(cluster, Observed::Applied(None), Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn transition_times_stay_while_a_condition_holds() {
        let mut cluster = cc();
        let first = status(&cluster, Observed::Applied(None), Timestamp::UNIX_EPOCH);
        cluster.status = Some(first.clone());
        let later = Timestamp::from_second(1_000).unwrap();
        let second = status(&cluster, Observed::Applied(None), later);
        assert_eq!(
            find(&second, "Ready").last_transition_time,
            find(&first, "Ready").last_transition_time
        );
    }
}
