//! The operator's permissions, in one place: `chatscale-operator rbac` prints
//! the ClusterRole, and the Helm chart uses it. The rules for owned objects are
//! derived from the list of kinds the controller applies.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};
use kube::api::ObjectMeta;

use crate::controller::APPLIED_KINDS;

pub const NAME: &str = "chatscale-operator";

fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        ..Default::default()
    }
}

pub fn cluster_role() -> ClusterRole {
    // Owned objects are only written with server-side apply (PATCH, which
    // creates them when absent) and removed by the garbage collector through
    // owner references: no update, no delete.
    let owned = ["get", "list", "watch", "create", "patch"];
    let mut rules = vec![
        // patch: the autoscaler sets spec.replicas.
        rule(
            "chatscale.dev",
            &["chatclusters"],
            &["get", "list", "watch", "patch"],
        ),
        // Status is written with server-side apply only.
        rule("chatscale.dev", &["chatclusters/status"], &["get", "patch"]),
    ];
    rules.extend(
        APPLIED_KINDS
            .iter()
            .map(|(_, group, plural)| rule(group, &[plural], &owned)),
    );
    // The autoscaler lists the pods it scrapes, marks the ones it drains
    // (patch), and replaces a drained pod that is wanted after all (delete).
    rules.push(rule("", &["pods"], &["list", "patch", "delete"]));
    rules.push(rule("events.k8s.io", &["events"], &["create", "patch"]));
    rules.push(rule(
        "coordination.k8s.io",
        &["leases"],
        &["get", "create", "update"],
    ));
    ClusterRole {
        metadata: ObjectMeta {
            name: Some(NAME.into()),
            labels: Some([("app.kubernetes.io/name".to_owned(), NAME.to_owned())].into()),
            ..Default::default()
        },
        rules: Some(rules),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_applied_kind_may_be_applied_and_watched() {
        let role = cluster_role();
        let rules = role.rules.unwrap();
        for (kind, group, plural) in APPLIED_KINDS {
            let rule = rules
                .iter()
                .find(|r| {
                    r.api_groups.as_deref() == Some(&[group.to_string()][..])
                        && r.resources.as_ref().unwrap().contains(&plural.to_string())
                })
                .unwrap_or_else(|| panic!("no rule for {kind}"));
            for verb in ["get", "list", "watch", "patch"] {
                assert!(rule.verbs.contains(&verb.to_owned()), "{kind}: {verb}");
            }
            for verb in ["update", "delete"] {
                assert!(!rule.verbs.contains(&verb.to_owned()), "{kind}: no {verb}");
            }
        }
        assert!(rules.iter().any(|r| {
            r.resources
                .as_ref()
                .unwrap()
                .contains(&"chatclusters/status".to_owned())
        }));
        let pods = rules
            .iter()
            .find(|r| r.resources.as_ref().unwrap().contains(&"pods".to_owned()))
            .expect("a rule for pods");
        assert!(
            pods.verbs.contains(&"patch".to_owned()),
            "the autoscaler marks pods"
        );
    }
}
