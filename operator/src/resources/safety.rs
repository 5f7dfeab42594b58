//! Guard rails around a chat cluster: a PodDisruptionBudget so that voluntary
//! evictions take chat-servers one at a time (each drains first), and
//! NetworkPolicies so that Redis and the admin port (drain API, metrics) are
//! reachable only by the chat-servers and the operator.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        networking::v1::{
            NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
            NetworkPolicySpec,
        },
        policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec},
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::api::DynamicObject;

use super::{SpecError, dynamic, names, owned_meta};
use crate::api::ChatCluster;

/// The PodDisruptionBudget, and the NetworkPolicies of Redis (managed only) and of the chat-servers.
pub fn objects(cc: &ChatCluster) -> Result<Vec<DynamicObject>, SpecError> {
    let mut objects = vec![dynamic(&disruption_budget(cc))];
    if cc.spec.redis.managed.is_some() {
        objects.push(dynamic(&redis_policy(cc)));
    }
    objects.push(dynamic(&chat_policy(cc)));
    Ok(objects)
}

fn disruption_budget(cc: &ChatCluster) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: owned_meta(cc, names::chat(cc), names::CHAT),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(match_labels(names::selector(cc, names::CHAT))),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Redis accepts connections from this cluster's chat-servers and from the
/// operator (which reads Redis throughput for autoscaling).
fn redis_policy(cc: &ChatCluster) -> NetworkPolicy {
    let chat_pods = NetworkPolicyPeer {
        pod_selector: Some(match_labels(names::selector(cc, names::CHAT))),
        ..Default::default()
    };
    policy(
        cc,
        names::redis(cc),
        names::REDIS,
        vec![ingress(
            names::REDIS_PORT,
            Some(vec![chat_pods, operator_pods()]),
        )],
    )
}

/// The public port is open to everyone; the admin port (drain API, /metrics)
/// only to the operator. Prometheus scraping :9090 would need one more peer
/// here (e.g. its namespace); the kubelet's probes are not subject to
/// NetworkPolicy on common CNIs.
fn chat_policy(cc: &ChatCluster) -> NetworkPolicy {
    policy(
        cc,
        names::chat(cc),
        names::CHAT,
        vec![
            ingress(names::PUBLIC_PORT, None),
            ingress(names::ADMIN_PORT, Some(vec![operator_pods()])),
        ],
    )
}

/// An ingress-only policy for the pods of `component`.
fn policy(
    cc: &ChatCluster,
    name: String,
    component: &str,
    rules: Vec<NetworkPolicyIngressRule>,
) -> NetworkPolicy {
    NetworkPolicy {
        metadata: owned_meta(cc, name, component),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(match_labels(names::selector(cc, component))),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(rules),
            ..Default::default()
        }),
    }
}

/// TCP to `port` from `from` (from anywhere when `None`).
fn ingress(port: i32, from: Option<Vec<NetworkPolicyPeer>>) -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from,
        ports: Some(vec![NetworkPolicyPort {
            port: Some(IntOrString::Int(port)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
    }
}

/// The operator's pods, in whichever namespace it runs.
fn operator_pods() -> NetworkPolicyPeer {
    let operator = BTreeMap::from([(
        "app.kubernetes.io/name".to_owned(),
        names::OPERATOR_NAME.to_owned(),
    )]);
    NetworkPolicyPeer {
        pod_selector: Some(match_labels(operator)),
        namespace_selector: Some(LabelSelector::default()),
        ..Default::default()
    }
}

fn match_labels(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::{MINIMAL, cluster, with_spec};

    const EXTERNAL: &str = "redis: {external: {urlSecretRef: {name: mine, key: url}}}";

    fn operator_selector() -> BTreeMap<String, String> {
        BTreeMap::from([("app.kubernetes.io/name".into(), "chatscale-operator".into())])
    }

    /// Port and peers of one ingress rule.
    fn rule(rule: &NetworkPolicyIngressRule) -> (IntOrString, Option<Vec<NetworkPolicyPeer>>) {
        let ports = rule.ports.clone().unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
        (ports[0].port.clone().unwrap(), rule.from.clone())
    }

    fn assert_operator(peer: &NetworkPolicyPeer) {
        assert_eq!(
            peer.pod_selector.clone().unwrap().match_labels,
            Some(operator_selector())
        );
        assert_eq!(peer.namespace_selector, Some(LabelSelector::default()));
    }

    fn built(cc: &ChatCluster) -> (PodDisruptionBudget, NetworkPolicy, NetworkPolicy) {
        let objects = objects(cc).unwrap();
        assert_eq!(objects.len(), 3);
        (
            objects[0].clone().try_parse().unwrap(),
            objects[1].clone().try_parse().unwrap(),
            objects[2].clone().try_parse().unwrap(),
        )
    }

    #[test]
    fn disruption_budget_allows_one_chat_pod_down() {
        let cc = cluster(MINIMAL);
        let pdb = built(&cc).0;
        assert_eq!(pdb.metadata.name.as_deref(), Some("team-chat"));
        let owner = &pdb.metadata.owner_references.unwrap()[0];
        assert_eq!(owner.uid, "1234");
        let spec = pdb.spec.unwrap();
        assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
        assert_eq!(spec.min_available, None);
        assert_eq!(
            spec.selector.unwrap().match_labels,
            Some(names::selector(&cc, names::CHAT))
        );
    }

    #[test]
    fn redis_policy_admits_chat_pods_and_the_operator() {
        let cc = cluster(MINIMAL);
        let policy = built(&cc).1;
        assert_eq!(policy.metadata.name.as_deref(), Some("team-redis"));
        let spec = policy.spec.unwrap();
        assert_eq!(
            spec.pod_selector.unwrap().match_labels,
            Some(names::selector(&cc, names::REDIS))
        );
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
        let rules = spec.ingress.unwrap();
        assert_eq!(rules.len(), 1);
        let (port, from) = rule(&rules[0]);
        assert_eq!(port, IntOrString::Int(6379));
        let from = from.unwrap();
        assert_eq!(from.len(), 2);
        assert_eq!(
            from[0].pod_selector.clone().unwrap().match_labels,
            Some(names::selector(&cc, names::CHAT))
        );
        assert_eq!(
            from[0].namespace_selector, None,
            "chat pods of the same namespace only"
        );
        assert_operator(&from[1]);
    }

    #[test]
    fn chat_policy_opens_public_port_and_admin_port_to_the_operator_only() {
        let cc = cluster(MINIMAL);
        let policy = built(&cc).2;
        assert_eq!(policy.metadata.name.as_deref(), Some("team-chat"));
        let spec = policy.spec.unwrap();
        assert_eq!(
            spec.pod_selector.unwrap().match_labels,
            Some(names::selector(&cc, names::CHAT))
        );
        assert_eq!(spec.policy_types, Some(vec!["Ingress".to_owned()]));
        let rules = spec.ingress.unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(rule(&rules[0]), (IntOrString::Int(3000), None));
        let (port, from) = rule(&rules[1]);
        assert_eq!(port, IntOrString::Int(9090));
        let from = from.unwrap();
        assert_eq!(from.len(), 1);
        assert_operator(&from[0]);
    }

    #[test]
    fn external_redis_has_no_redis_policy() {
        let cc = with_spec(EXTERNAL);
        let objects = objects(&cc).unwrap();
        let kinds: Vec<_> = objects
            .iter()
            .map(|o| o.types.clone().unwrap().kind)
            .collect();
        assert_eq!(kinds, ["PodDisruptionBudget", "NetworkPolicy"]);
        let chat: NetworkPolicy = objects[1].clone().try_parse().unwrap();
        assert_eq!(chat.metadata.name.as_deref(), Some("team-chat"));
    }

    #[test]
    fn api_versions_are_the_stable_ones() {
        let objects = objects(&cluster(MINIMAL)).unwrap();
        let versions: Vec<_> = objects
            .iter()
            .map(|o| o.types.clone().unwrap().api_version)
            .collect();
        assert_eq!(
            versions,
            ["policy/v1", "networking.k8s.io/v1", "networking.k8s.io/v1"]
        );
    }
}
