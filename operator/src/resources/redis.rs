//! The managed Redis: one StatefulSet with an append-only file on a
//! PersistentVolume, its ClusterIP Service, and the Secret with its generated
//! password and the full URL the chat-servers read. With `redis.external`
//! the user runs Redis and nothing is built here.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{StatefulSet, StatefulSetSpec},
        core::v1::{
            Container, ContainerPort, ExecAction, KeyToPath, PersistentVolumeClaim,
            PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe, Secret, SecretVolumeSource,
            Service, ServicePort, ServiceSpec, TCPSocketAction, Volume, VolumeMount,
            VolumeResourceRequirements,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity, apis::meta::v1::LabelSelector, util::intstr::IntOrString,
    },
};
use kube::{api::DynamicObject, api::ObjectMeta};

use super::{Generated, SpecError, dynamic, names, owned_meta};
use crate::api::{ChatCluster, ManagedRedis};

/// uid and gid of the `redis` user in the official Redis images.
const REDIS_UID: i64 = 999;
const DATA_VOLUME: &str = "data";
const DATA_DIR: &str = "/data";
const AUTH_VOLUME: &str = "auth";
/// The password, as a read-only file from the generated Secret.
pub const PASSWORD_FILE: &str = "/etc/redis-auth/password";

/// Starts Redis with the password from [`PASSWORD_FILE`]. The shell expands it
/// into a here-document that Redis reads as its config from stdin (`-`), so
/// the password is in no environment variable and no command line; `exec`
/// leaves redis-server as the container's main process, to get SIGTERM.
pub fn start_script() -> String {
    format!(
        "exec redis-server - --appendonly yes --dir {DATA_DIR} <<EOF\nrequirepass $(cat {PASSWORD_FILE})\nEOF\n"
    )
}

/// Ready once Redis answers PONG to an authenticated PING (not while it loads
/// the AOF). redis-cli takes the password from `REDISCLI_AUTH`, set for it alone.
pub fn readiness_script() -> String {
    format!("REDISCLI_AUTH=\"$(cat {PASSWORD_FILE})\" redis-cli ping | grep -q PONG")
}

/// The managed Redis objects (Secret, Service, StatefulSet); none for an external Redis.
pub fn objects(cc: &ChatCluster, generated: &Generated) -> Result<Vec<DynamicObject>, SpecError> {
    let Some(managed) = &cc.spec.redis.managed else {
        return Ok(Vec::new());
    };
    Ok(vec![
        dynamic(&auth_secret(cc, &generated.redis_password)),
        dynamic(&service(cc)),
        dynamic(&stateful_set(cc, managed)),
    ])
}

/// `redis://:<password>@<cc>-redis.<namespace>.svc:6379/0`, the password percent-encoded.
fn url(cc: &ChatCluster, password: &str) -> String {
    let namespace = names::namespace(cc);
    format!(
        "redis://:{}@{}.{namespace}.svc:{}/0",
        percent_encode(password),
        names::redis(cc),
        names::REDIS_PORT
    )
}

/// Encodes every byte outside RFC 3986's unreserved set (redis-rs decodes the password).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn auth_secret(cc: &ChatCluster, password: &str) -> Secret {
    let data = [
        ("password", password.to_owned()),
        ("url", url(cc, password)),
    ];
    Secret {
        metadata: owned_meta(cc, names::redis_auth(cc), names::REDIS),
        string_data: Some(data.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

fn service(cc: &ChatCluster) -> Service {
    Service {
        metadata: owned_meta(cc, names::redis(cc), names::REDIS),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names::selector(cc, names::REDIS)),
            ports: Some(vec![ServicePort {
                name: Some("redis".into()),
                port: names::REDIS_PORT,
                target_port: Some(IntOrString::String("redis".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn stateful_set(cc: &ChatCluster, managed: &ManagedRedis) -> StatefulSet {
    StatefulSet {
        metadata: owned_meta(cc, names::redis(cc), names::REDIS),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(names::redis(cc)),
            selector: LabelSelector {
                match_labels: Some(names::selector(cc, names::REDIS)),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names::labels(cc, names::REDIS)),
                    ..Default::default()
                }),
                spec: Some(pod_spec(cc, managed)),
            },
            volume_claim_templates: Some(vec![data_claim(cc, managed)]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_spec(cc: &ChatCluster, managed: &ManagedRedis) -> PodSpec {
    PodSpec {
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(super::security::pod(REDIS_UID)),
        containers: vec![container(managed)],
        volumes: Some(vec![auth_volume(cc)]),
        ..Default::default()
    }
}

fn container(managed: &ManagedRedis) -> Container {
    Container {
        name: "redis".into(),
        image: Some(managed.image.clone()),
        command: Some(["sh", "-c", &start_script()].map(String::from).to_vec()),
        ports: Some(vec![ContainerPort {
            name: Some("redis".into()),
            container_port: names::REDIS_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        readiness_probe: Some(readiness_probe()),
        liveness_probe: Some(liveness_probe()),
        resources: Some(managed.resources.clone()),
        security_context: Some(super::security::container()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: DATA_VOLUME.into(),
                mount_path: DATA_DIR.into(),
                ..Default::default()
            },
            VolumeMount {
                name: AUTH_VOLUME.into(),
                mount_path: PASSWORD_FILE
                    .rsplit_once('/')
                    .map_or(PASSWORD_FILE, |(dir, _)| dir)
                    .into(),
                read_only: Some(true),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

/// Only the `password` key of the generated Secret, readable by the owner and the pod's fsGroup (Redis's group).
fn auth_volume(cc: &ChatCluster) -> Volume {
    Volume {
        name: AUTH_VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(names::redis_auth(cc)),
            items: Some(vec![KeyToPath {
                key: "password".into(),
                path: "password".into(),
                mode: Some(0o440),
            }]),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn readiness_probe() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(["sh", "-c", &readiness_script()].map(String::from).to_vec()),
        }),
        period_seconds: Some(5),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// Alive while it accepts connections (it does while loading a large AOF).
fn liveness_probe() -> Probe {
    Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::String("redis".into()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(10),
        period_seconds: Some(10),
        timeout_seconds: Some(3),
        failure_threshold: Some(6),
        ..Default::default()
    }
}

fn data_claim(cc: &ChatCluster, managed: &ManagedRedis) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(DATA_VOLUME.into()),
            labels: Some(names::labels(cc, names::REDIS)),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    Quantity(managed.storage.clone()),
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::{MINIMAL, cluster};

    fn generated() -> Generated {
        Generated {
            redis_password: "s3cret".into(),
            admin_token: "admin-token".into(),
        }
    }

    fn built(cc: &ChatCluster) -> (Secret, Service, StatefulSet) {
        let objects = objects(cc, &generated()).unwrap();
        assert_eq!(objects.len(), 3);
        (
            objects[0].clone().try_parse().unwrap(),
            objects[1].clone().try_parse().unwrap(),
            objects[2].clone().try_parse().unwrap(),
        )
    }

    /// The storage the data volume claims.
    fn storage(sts: &StatefulSet) -> Quantity {
        let claim = &sts.spec.clone().unwrap().volume_claim_templates.unwrap()[0];
        claim
            .spec
            .clone()
            .unwrap()
            .resources
            .unwrap()
            .requests
            .unwrap()["storage"]
            .clone()
    }

    fn pod(sts: &StatefulSet) -> PodSpec {
        sts.spec.clone().unwrap().template.spec.unwrap()
    }

    #[test]
    fn secret_holds_password_and_full_url() {
        let (secret, _, _) = built(&cluster(MINIMAL));
        assert_eq!(secret.metadata.name.as_deref(), Some("team-redis-auth"));
        assert_eq!(secret.metadata.namespace.as_deref(), Some("apps"));
        let data = secret.string_data.unwrap();
        assert_eq!(data["password"], "s3cret");
        assert_eq!(data["url"], "redis://:s3cret@team-redis.apps.svc:6379/0");
        let owner = &secret.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("1234", Some(true)));
    }

    #[test]
    fn url_defaults_namespace_and_encodes_password() {
        let cc = cluster(&MINIMAL.replace(", namespace: apps", ""));
        assert_eq!(
            url(&cc, "a@b:c/d%"),
            "redis://:a%40b%3Ac%2Fd%25@team-redis.default.svc:6379/0"
        );
    }

    #[test]
    fn service_selects_redis_pods_on_6379() {
        let cc = cluster(MINIMAL);
        let (_, service, _) = built(&cc);
        let spec = service.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.selector, Some(names::selector(&cc, names::REDIS)));
        let port = &spec.ports.unwrap()[0];
        assert_eq!((port.name.as_deref(), port.port), (Some("redis"), 6379));
    }

    #[test]
    fn stateful_set_runs_one_redis_with_aof_on_a_volume() {
        let cc = cluster(MINIMAL);
        let (_, _, sts) = built(&cc);
        let spec = sts.spec.clone().unwrap();
        assert_eq!(spec.replicas, Some(1));
        assert_eq!(spec.service_name.as_deref(), Some("team-redis"));
        let claim = &spec.volume_claim_templates.unwrap()[0];
        assert_eq!(claim.metadata.name.as_deref(), Some("data"));
        assert_eq!(storage(&sts), Quantity("1Gi".into()));
        let container = &pod(&sts).containers[0];
        assert_eq!(container.image.as_deref(), Some("redis:7.4-alpine"));
        let command = container.command.clone().unwrap();
        assert_eq!(command[..2], ["sh", "-c"]);
        assert_eq!(
            command[2],
            start_script(),
            "tests/managed_redis.rs runs this script"
        );
        assert!(container.env.is_none(), "no password in the environment");
        let auth = pod(&sts).volumes.clone().unwrap()[0]
            .secret
            .clone()
            .unwrap();
        assert_eq!(auth.secret_name.as_deref(), Some("team-redis-auth"));
        assert_eq!(auth.items.unwrap()[0].key, "password");
        let mounts = container.volume_mounts.clone().unwrap();
        assert_eq!(
            (mounts[1].mount_path.as_str(), mounts[1].read_only),
            ("/etc/redis-auth", Some(true))
        );
        assert_eq!(
            container.volume_mounts.clone().unwrap()[0].mount_path,
            "/data"
        );
    }

    #[test]
    fn password_never_appears_in_the_stateful_set() {
        let (_, _, sts) = built(&cluster(MINIMAL));
        assert!(!serde_json::to_string(&sts).unwrap().contains("s3cret"));
    }

    #[test]
    fn probes_ping_for_readiness_and_tcp_for_liveness() {
        let (_, _, sts) = built(&cluster(MINIMAL));
        let container = &pod(&sts).containers[0];
        let ready = container
            .readiness_probe
            .clone()
            .unwrap()
            .exec
            .unwrap()
            .command
            .unwrap();
        assert_eq!(ready[..2], ["sh", "-c"]);
        assert!(
            ready[2].contains("REDISCLI_AUTH=\"$(cat /etc/redis-auth/password)\" redis-cli ping")
        );
        let live = container
            .liveness_probe
            .clone()
            .unwrap()
            .tcp_socket
            .unwrap();
        assert_eq!(live.port, IntOrString::String("redis".into()));
    }

    #[test]
    fn runs_restricted_as_the_redis_user() {
        let (_, _, sts) = built(&cluster(MINIMAL));
        let pod = pod(&sts);
        let psc = pod.security_context.clone().unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!((psc.run_as_user, psc.fs_group), (Some(999), Some(999)));
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        assert_eq!(pod.automount_service_account_token, Some(false));
        let csc = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(csc.read_only_root_filesystem, Some(true));
        assert_eq!(csc.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
    }

    #[test]
    fn spec_values_reach_the_stateful_set() {
        let yaml = MINIMAL.replace(
            "spec: {",
            "spec: {redis: {managed: {image: 'redis:8', storage: 5Gi, resources: {limits: {memory: 2Gi}}}}, ",
        );
        let (_, _, sts) = built(&cluster(&yaml));
        let container = &pod(&sts).containers[0];
        assert_eq!(container.image.as_deref(), Some("redis:8"));
        let limits = container.resources.clone().unwrap().limits.unwrap();
        assert_eq!(limits["memory"], Quantity("2Gi".into()));
        assert_eq!(storage(&sts), Quantity("5Gi".into()));
    }

    #[test]
    fn external_redis_builds_nothing() {
        let yaml = MINIMAL.replace(
            "spec: {",
            "spec: {redis: {external: {urlSecretRef: {name: mine, key: url}}}, ",
        );
        assert!(objects(&cluster(&yaml), &generated()).unwrap().is_empty());
    }

    #[test]
    fn output_is_deterministic() {
        let cc = cluster(MINIMAL);
        let first = serde_json::to_string(&objects(&cc, &generated()).unwrap()).unwrap();
        let second = serde_json::to_string(&objects(&cc, &generated()).unwrap()).unwrap();
        assert_eq!(first, second);
    }
}
