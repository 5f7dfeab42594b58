//! The chat-servers: their Deployment, the client Service in front of them,
//! and the Secret with the admin token of their drain API. Secrets reach the
//! pods as files (the Redis URL with its password, the admin token, the AI
//! API key, the JWT keys), never as literal values or environment variables.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment},
        core::v1::{
            ClientIPConfig, Container, ContainerPort, EnvVar, HTTPGetAction, KeyToPath, PodSpec,
            PodTemplateSpec, Probe, Secret, SecretVolumeSource, Service, ServicePort, ServiceSpec,
            SessionAffinityConfig, TopologySpreadConstraint, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use kube::{
    ResourceExt,
    api::{DynamicObject, ObjectMeta},
};

use chatscale_contract::{admin, env, settings};

use super::{Generated, SpecError, dynamic, names, owned_meta};
use crate::api::{AiProvider, AuthMode, ChatCluster, ServiceAffinity};

const CONTAINER: &str = "chat-server";
/// uid and gid the chat-server runs as (the distroless `nonroot` user).
const NONROOT: i64 = 65532;
/// Secret files are readable by the owner and the pod's fsGroup only.
const SECRET_FILE_MODE: i32 = 0o440;
const ADMIN_DIR: &str = "/var/run/chatscale/admin";
const AI_DIR: &str = "/var/run/chatscale/ai";
const JWT_DIR: &str = "/var/run/chatscale/jwt";
const REDIS_DIR: &str = "/var/run/chatscale/redis";
/// Seconds the kubelet waits beyond the drain timeout before it kills a pod.
const GRACE_MARGIN_SECONDS: i64 = 30;
/// How long ClientIP affinity keeps a client on one pod (the Kubernetes default, 3 hours).
const CLIENT_IP_TIMEOUT_SECONDS: i32 = 10_800;

/// The admin Secret, the chat-server Deployment and the client Service.
pub fn objects(cc: &ChatCluster, generated: &Generated) -> Result<Vec<DynamicObject>, SpecError> {
    let wiring = Wiring::new(cc)?;
    Ok(vec![
        dynamic(&admin_secret(cc, &generated.admin_token)),
        dynamic(&deployment(cc, wiring)),
        dynamic(&service(cc)),
    ])
}

fn admin_secret(cc: &ChatCluster, token: &str) -> Secret {
    Secret {
        metadata: owned_meta(cc, names::admin_secret(cc), names::CHAT),
        string_data: Some(BTreeMap::from([("token".to_owned(), token.to_owned())])),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// What the container is told: environment, and the Secret volumes behind the `*_FILE` paths.
struct Wiring {
    env: Vec<EnvVar>,
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
}

impl Wiring {
    fn new(cc: &ChatCluster) -> Result<Self, SpecError> {
        let mut wiring = Self {
            env: base_env(cc)?,
            volumes: Vec::new(),
            mounts: Vec::new(),
        };
        wiring.redis(cc)?;
        wiring.admin_token(cc);
        wiring.ai(cc)?;
        wiring.auth(cc)?;
        wiring.limits(cc)?;
        Ok(wiring)
    }

    /// Client authentication: the JWT key as a file, the checks as flags.
    fn auth(&mut self, cc: &ChatCluster) -> Result<(), SpecError> {
        let auth = &cc.spec.auth;
        match (&auth.jwt_secret_ref, &auth.jwt_public_keys_ref) {
            (Some(_), Some(_)) => {
                return Err(SpecError(
                    "set at most one of auth.jwtSecretRef and auth.jwtPublicKeysRef".into(),
                ));
            }
            (Some(key), None) => {
                self.env
                    .push(env(env::JWT_SECRET_FILE, format!("{JWT_DIR}/secret")));
                self.mount("jwt-key", JWT_DIR, key.name.clone(), &key.key, "secret");
            }
            (None, Some(key)) => {
                self.env.push(env(
                    env::JWT_PUBLIC_KEY_FILE,
                    format!("{JWT_DIR}/public-keys"),
                ));
                self.mount(
                    "jwt-key",
                    JWT_DIR,
                    key.name.clone(),
                    &key.key,
                    "public-keys",
                );
            }
            (None, None) if auth.mode == Some(AuthMode::Required) => {
                return Err(SpecError(
                    "auth.mode required needs auth.jwtSecretRef or auth.jwtPublicKeysRef".into(),
                ));
            }
            (None, None) => {}
        }
        if let Some(mode) = auth.mode {
            let mode = match mode {
                AuthMode::Off => "off",
                AuthMode::Required => "required",
            };
            self.env.push(env(env::AUTH, mode));
        }
        for (name, value) in [
            (env::JWT_ISSUER, &auth.issuer),
            (env::JWT_AUDIENCE, &auth.audience),
            (env::JWT_ROOMS_CLAIM, &auth.rooms_claim),
        ] {
            if let Some(value) = value {
                self.env.push(env(name, value));
            }
        }
        if !auth.allowed_origins.is_empty() {
            self.env
                .push(env(env::ALLOWED_ORIGINS, auth.allowed_origins.join(",")));
        }
        Ok(())
    }

    fn redis(&mut self, cc: &ChatCluster) -> Result<(), SpecError> {
        let redis = &cc.spec.redis;
        let (secret, key, cluster) = match (&redis.managed, &redis.external) {
            (Some(_), None) => (names::redis_auth(cc), "url", false),
            (None, Some(external)) => {
                let r = &external.url_secret_ref;
                (r.name.clone(), r.key.as_str(), external.cluster)
            }
            _ => {
                return Err(SpecError(
                    "set exactly one of redis.managed and redis.external".into(),
                ));
            }
        };
        // The URL carries the password: a file, not an environment variable.
        self.env
            .push(env(env::REDIS_URL_FILE, format!("{REDIS_DIR}/url")));
        self.mount("redis-url", REDIS_DIR, secret, key, "url");
        if cluster {
            self.env.push(env(env::REDIS_CLUSTER, "true"));
        }
        Ok(())
    }

    fn admin_token(&mut self, cc: &ChatCluster) {
        self.env
            .push(env(env::ADMIN_TOKEN_FILE, format!("{ADMIN_DIR}/token")));
        self.mount(
            "admin-token",
            ADMIN_DIR,
            names::admin_secret(cc),
            "token",
            "token",
        );
    }

    fn ai(&mut self, cc: &ChatCluster) -> Result<(), SpecError> {
        let ai = &cc.spec.ai;
        let (provider, vars) = match ai.provider {
            AiProvider::Demo => {
                self.env.push(env(env::AI_PROVIDER, "demo"));
                return Ok(());
            }
            AiProvider::Openai => ("openai", ProviderVars::OPENAI),
            AiProvider::Anthropic => ("anthropic", ProviderVars::ANTHROPIC),
        };
        self.env.push(env(env::AI_PROVIDER, provider));
        if let Some(base_url) = &ai.base_url {
            self.env.push(env(vars.base_url, base_url));
        }
        if let Some(model) = &ai.model {
            self.env.push(env(vars.model, model));
        }
        if let (AiProvider::Anthropic, Some(max_tokens)) = (ai.provider, ai.max_tokens) {
            self.env
                .push(env(env::ANTHROPIC_MAX_TOKENS, max_tokens.to_string()));
        }
        match (&ai.api_key_secret_ref, &ai.base_url) {
            (Some(key), _) => {
                self.env
                    .push(env(vars.api_key_file, format!("{AI_DIR}/api-key")));
                self.mount("ai-api-key", AI_DIR, key.name.clone(), &key.key, "api-key");
            }
            // A self-hosted endpoint or gateway (vLLM, Ollama, LiteLLM ...) often needs no key.
            (None, Some(_)) => {}
            (None, None) => {
                return Err(SpecError(format!(
                    "ai.provider {provider} needs ai.apiKeySecretRef (or ai.baseUrl for an endpoint without a key)"
                )));
            }
        }
        Ok(())
    }

    /// The limits the ChatCluster sets; the others keep chat-server's defaults.
    fn limits(&mut self, cc: &ChatCluster) -> Result<(), SpecError> {
        let limits = &cc.spec.limits;
        for (name, value) in [
            (env::EVENTS_PER_SEC, limits.events_per_sec),
            (env::EVENTS_BURST, limits.events_burst),
            (env::USER_EVENTS_PER_SEC, limits.user_events_per_sec),
            (env::FLOOD_DISCONNECT_AFTER, limits.flood_disconnect_after),
            (env::MAX_AI_ANSWERS_PER_USER, limits.max_ai_answers_per_user),
            (env::MAX_AI_ANSWERS_PER_ROOM, limits.max_ai_answers_per_room),
            (env::MAX_ROOMS_PER_SOCKET, limits.max_rooms_per_socket),
            (
                env::CONNECTIONS_PER_MINUTE_PER_IP,
                limits.connections_per_minute_per_ip,
            ),
        ] {
            if let Some(value) = value {
                self.env.push(env(name, value.to_string()));
            }
        }
        let not_a_range = |p: &&String| {
            p.parse::<std::net::IpAddr>().is_err() && p.parse::<ipnet::IpNet>().is_err()
        };
        if let Some(bad) = limits.trusted_proxies.iter().find(not_a_range) {
            return Err(SpecError(format!(
                "limits.trustedProxies: {bad:?} is not an IP address or CIDR range"
            )));
        }
        if !limits.trusted_proxies.is_empty() {
            self.env
                .push(env(env::TRUSTED_PROXIES, limits.trusted_proxies.join(",")));
        }
        Ok(())
    }

    /// Mounts one key of a Secret as `<dir>/<path>`, read-only.
    fn mount(&mut self, volume: &str, dir: &str, secret: String, key: &str, path: &str) {
        self.volumes.push(Volume {
            name: volume.into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret),
                items: Some(vec![KeyToPath {
                    key: key.into(),
                    path: path.into(),
                    ..Default::default()
                }]),
                default_mode: Some(SECRET_FILE_MODE),
                ..Default::default()
            }),
            ..Default::default()
        });
        self.mounts.push(VolumeMount {
            name: volume.into(),
            mount_path: dir.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
}

/// Settings that hold no secret.
fn base_env(cc: &ChatCluster) -> Result<Vec<EnvVar>, SpecError> {
    let drain = &cc.spec.drain;
    Ok(vec![
        env(env::HOST, "0.0.0.0"),
        env(env::PORT, names::PUBLIC_PORT.to_string()),
        env(env::ADMIN_PORT, names::ADMIN_PORT.to_string()),
        env(env::LOG_FORMAT, "json"),
        env(env::KEY_PREFIX, key_prefix(cc)?),
        env(env::DRAIN_TIMEOUT, format!("{}s", drain.timeout_seconds)),
        env(env::DRAIN_RATE, drain.rate.to_string()),
    ])
}

/// `<namespace>.<name>`: unique per cluster, so several clusters can share one Redis.
fn key_prefix(cc: &ChatCluster) -> Result<String, SpecError> {
    let namespace = names::namespace(cc);
    let prefix = format!("{namespace}.{}", cc.name_any());
    if let Err(allowed) = settings::check_key_prefix(&prefix) {
        return Err(SpecError(format!(
            "the Redis key prefix `{prefix}` (namespace.name) is {} characters, chat-server allows {allowed}: use a shorter ChatCluster name",
            prefix.len()
        )));
    }
    Ok(prefix)
}

/// The variables of one OpenAI-style or Anthropic provider.
struct ProviderVars {
    base_url: &'static str,
    model: &'static str,
    api_key_file: &'static str,
}

impl ProviderVars {
    const OPENAI: Self = Self {
        base_url: env::OPENAI_BASE_URL,
        model: env::OPENAI_MODEL,
        api_key_file: env::OPENAI_API_KEY_FILE,
    };
    const ANTHROPIC: Self = Self {
        base_url: env::ANTHROPIC_BASE_URL,
        model: env::ANTHROPIC_MODEL,
        api_key_file: env::ANTHROPIC_API_KEY_FILE,
    };
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..Default::default()
    }
}

fn chat_selector(cc: &ChatCluster) -> LabelSelector {
    LabelSelector {
        match_labels: Some(names::selector(cc, names::CHAT)),
        ..Default::default()
    }
}

fn deployment(cc: &ChatCluster, wiring: Wiring) -> Deployment {
    Deployment {
        metadata: owned_meta(cc, names::chat(cc), names::CHAT),
        spec: Some(DeploymentSpec {
            // Also with autoscaling on: the operator's autoscaler writes spec.replicas.
            replicas: Some(cc.spec.replicas),
            selector: chat_selector(cc),
            // Drain makes removing a pod graceful; never remove one before its successor is up.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(names::labels(cc, names::CHAT)),
                    ..Default::default()
                }),
                spec: Some(pod_spec(cc, wiring)),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_spec(cc: &ChatCluster, wiring: Wiring) -> PodSpec {
    let grace = i64::from(cc.spec.drain.timeout_seconds) + GRACE_MARGIN_SECONDS;
    PodSpec {
        automount_service_account_token: Some(false),
        // Service links would inject `<SERVICE>_PORT` variables that can clash with CHAT_* flags.
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(grace),
        security_context: Some(super::security::pod(NONROOT)),
        topology_spread_constraints: Some(spread(cc)),
        volumes: Some(wiring.volumes),
        containers: vec![Container {
            name: CONTAINER.into(),
            image: Some(cc.spec.image.clone()),
            ports: Some(vec![
                port("http", names::PUBLIC_PORT),
                port("admin", names::ADMIN_PORT),
            ]),
            env: Some(wiring.env),
            volume_mounts: Some(wiring.mounts),
            readiness_probe: Some(probe(
                admin::READYZ,
                0,
                admin::READINESS_PERIOD_SECONDS as i32,
                admin::READINESS_FAILURES as i32,
            )),
            liveness_probe: Some(probe(admin::HEALTHZ, 5, 10, 3)),
            resources: Some(cc.spec.resources.clone()),
            security_context: Some(super::security::container()),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn port(name: &str, number: i32) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: number,
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// An HTTP GET on the admin port.
fn probe(path: &str, initial_delay: i32, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("admin".into()),
            ..Default::default()
        }),
        initial_delay_seconds: (initial_delay > 0).then_some(initial_delay),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// Spread pods over nodes and zones when the scheduler can; never block scheduling.
fn spread(cc: &ChatCluster) -> Vec<TopologySpreadConstraint> {
    ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(chat_selector(cc)),
            ..Default::default()
        })
        .to_vec()
}

/// The client Service: the public port only, never the admin port.
fn service(cc: &ChatCluster) -> Service {
    let mut metadata = owned_meta(cc, names::chat(cc), names::CHAT);
    let annotations = super::routing::service_annotations(cc);
    metadata.annotations = (!annotations.is_empty()).then_some(annotations);
    let client_ip = cc.spec.routing.service_affinity == ServiceAffinity::ClientIP;
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(names::selector(cc, names::CHAT)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            session_affinity: Some(if client_ip { "ClientIP" } else { "None" }.into()),
            session_affinity_config: client_ip.then_some(SessionAffinityConfig {
                client_ip: Some(ClientIPConfig {
                    timeout_seconds: Some(CLIENT_IP_TIMEOUT_SECONDS),
                }),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::{MINIMAL, cluster, with_spec};

    fn generated() -> Generated {
        Generated {
            redis_password: "redis-pw".into(),
            admin_token: "admin-token-value".into(),
        }
    }

    fn built(cc: &ChatCluster) -> (Secret, Deployment, Service) {
        let objects = objects(cc, &generated()).unwrap();
        assert_eq!(objects.len(), 3);
        (
            objects[0].clone().try_parse().unwrap(),
            objects[1].clone().try_parse().unwrap(),
            objects[2].clone().try_parse().unwrap(),
        )
    }

    fn pod(cc: &ChatCluster) -> PodSpec {
        built(cc).1.spec.unwrap().template.spec.unwrap()
    }

    fn container(cc: &ChatCluster) -> Container {
        pod(cc).containers.remove(0)
    }

    fn env_of(container: &Container) -> BTreeMap<String, EnvVar> {
        let env = container.env.clone().unwrap();
        env.into_iter().map(|e| (e.name.clone(), e)).collect()
    }

    fn value<'a>(env: &'a BTreeMap<String, EnvVar>, name: &str) -> Option<&'a str> {
        env.get(name).and_then(|e| e.value.as_deref())
    }

    #[test]
    fn admin_secret_holds_the_token() {
        let (secret, _, _) = built(&cluster(MINIMAL));
        assert_eq!(secret.metadata.name.as_deref(), Some("team-admin"));
        assert_eq!(secret.string_data.unwrap()["token"], "admin-token-value");
        let owner = &secret.metadata.owner_references.unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("1234", Some(true)));
    }

    #[test]
    fn deployment_shape() {
        let cc = cluster(MINIMAL);
        let (_, deployment, _) = built(&cc);
        assert_eq!(deployment.metadata.name.as_deref(), Some("team-chat"));
        let spec = deployment.spec.unwrap();
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(
            spec.selector.match_labels,
            Some(names::selector(&cc, names::CHAT))
        );
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(labels, names::labels(&cc, names::CHAT));
        let rolling = spec.strategy.unwrap().rolling_update.unwrap();
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(false));
        let c = &pod.containers[0];
        assert_eq!(c.name, "chat-server");
        assert_eq!(
            c.image.as_deref(),
            Some("ghcr.io/chatscale/chat-server:0.1.0")
        );
        let ports: Vec<_> = c
            .ports
            .clone()
            .unwrap()
            .into_iter()
            .map(|p| (p.name.unwrap(), p.container_port))
            .collect();
        assert_eq!(ports, [("http".into(), 3000), ("admin".into(), 9090)]);
    }

    #[test]
    fn replicas_follow_spec_also_with_autoscaling() {
        let cc = with_spec("replicas: 7, autoscaling: {enabled: true}");
        assert_eq!(built(&cc).1.spec.unwrap().replicas, Some(7));
    }

    #[test]
    fn grace_period_covers_the_drain() {
        assert_eq!(
            pod(&cluster(MINIMAL)).termination_grace_period_seconds,
            Some(330)
        );
        let cc = with_spec("drain: {timeoutSeconds: 60, rate: 10}");
        assert_eq!(pod(&cc).termination_grace_period_seconds, Some(90));
        let env = env_of(&container(&cc));
        assert_eq!(value(&env, "CHAT_DRAIN_TIMEOUT"), Some("60s"));
        assert_eq!(value(&env, "CHAT_DRAIN_RATE"), Some("10"));
    }

    #[test]
    fn probes_use_the_admin_port() {
        let c = container(&cluster(MINIMAL));
        let ready = c.readiness_probe.unwrap();
        let get = ready.http_get.clone().unwrap();
        assert_eq!(
            (get.path.as_deref(), get.port),
            (Some("/readyz"), IntOrString::String("admin".into()))
        );
        assert_eq!(
            (ready.period_seconds, ready.failure_threshold),
            (Some(5), Some(2))
        );
        let live = c.liveness_probe.unwrap();
        let get = live.http_get.clone().unwrap();
        assert_eq!(
            (get.path.as_deref(), get.port),
            (Some("/healthz"), IntOrString::String("admin".into()))
        );
        assert_eq!(live.initial_delay_seconds, Some(5));
        assert_eq!(
            (live.period_seconds, live.failure_threshold),
            (Some(10), Some(3))
        );
    }

    #[test]
    fn runs_restricted() {
        let pod = pod(&cluster(MINIMAL));
        let psc = pod.security_context.unwrap();
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(
            (psc.run_as_user, psc.run_as_group, psc.fs_group),
            (Some(65532), Some(65532), Some(65532))
        );
        assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let csc = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(csc.allow_privilege_escalation, Some(false));
        assert_eq!(csc.read_only_root_filesystem, Some(true));
        assert_eq!(csc.capabilities.unwrap().drop, Some(vec!["ALL".to_owned()]));
    }

    #[test]
    fn spreads_over_nodes_and_zones() {
        let cc = cluster(MINIMAL);
        let spread = pod(&cc).topology_spread_constraints.unwrap();
        let keys: Vec<_> = spread.iter().map(|s| s.topology_key.as_str()).collect();
        assert_eq!(
            keys,
            ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        );
        for s in &spread {
            assert_eq!(
                (s.max_skew, s.when_unsatisfiable.as_str()),
                (1, "ScheduleAnyway")
            );
            assert_eq!(
                s.label_selector.clone().unwrap().match_labels,
                Some(names::selector(&cc, names::CHAT))
            );
        }
    }

    #[test]
    fn env_wiring_with_managed_redis() {
        let c = container(&cluster(MINIMAL));
        let env = env_of(&c);
        assert_eq!(value(&env, "CHAT_HOST"), Some("0.0.0.0"));
        assert_eq!(value(&env, "CHAT_PORT"), Some("3000"));
        assert_eq!(value(&env, "CHAT_ADMIN_PORT"), Some("9090"));
        assert_eq!(value(&env, "CHAT_LOG_FORMAT"), Some("json"));
        assert_eq!(value(&env, "CHAT_KEY_PREFIX"), Some("apps.team"));
        assert_eq!(value(&env, "CHAT_AI_PROVIDER"), Some("demo"));
        assert!(!env.contains_key("CHAT_REDIS_CLUSTER"));
        assert!(!env.contains_key("CHAT_OPENAI_API_KEY_FILE"));
        assert!(
            !env.contains_key("CHAT_REDIS_URL"),
            "no password in the environment"
        );
        assert_eq!(
            value(&env, "CHAT_REDIS_URL_FILE"),
            Some("/var/run/chatscale/redis/url")
        );
        assert_eq!(
            secret_file(&cluster(MINIMAL), "redis-url"),
            ("team-redis-auth".into(), "url".into(), "url".into())
        );
    }

    /// The Secret, key and file name behind a Secret volume, checking that it
    /// is mounted read-only with owner/group-only permissions.
    fn secret_file(cc: &ChatCluster, volume: &str) -> (String, String, String) {
        let found = pod(cc)
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == volume)
            .unwrap();
        let secret = found.secret.unwrap();
        assert_eq!(secret.default_mode, Some(SECRET_FILE_MODE));
        let items = secret.items.unwrap();
        assert_eq!(items.len(), 1, "only the one key is mounted");
        let mount = container(cc)
            .volume_mounts
            .unwrap()
            .into_iter()
            .find(|m| m.name == volume)
            .unwrap();
        assert_eq!(mount.read_only, Some(true));
        (
            secret.secret_name.unwrap(),
            items[0].key.clone(),
            items[0].path.clone(),
        )
    }

    #[test]
    fn admin_token_is_a_read_only_file() {
        let cc = cluster(MINIMAL);
        let pod = pod(&cc);
        let env = env_of(&pod.containers[0]);
        assert_eq!(
            value(&env, "CHAT_ADMIN_TOKEN_FILE"),
            Some("/var/run/chatscale/admin/token")
        );
        assert!(!env.contains_key("CHAT_ADMIN_TOKEN"));
        assert_eq!(
            secret_file(&cc, "admin-token"),
            ("team-admin".into(), "token".into(), "token".into())
        );
        let mount = pod.containers[0]
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .find(|m| m.name == "admin-token")
            .unwrap();
        assert_eq!(mount.mount_path, "/var/run/chatscale/admin");
        assert_eq!(mount.read_only, Some(true));
    }

    #[test]
    fn no_generated_secret_in_the_deployment() {
        let (_, deployment, _) = built(&cluster(MINIMAL));
        let json = serde_json::to_string(&deployment).unwrap();
        assert!(!json.contains("admin-token-value") && !json.contains("redis-pw"));
    }

    #[test]
    fn external_redis_url_comes_from_the_users_secret() {
        let cc = with_spec(
            "redis: {external: {urlSecretRef: {name: my-redis, key: uri}, cluster: true}}",
        );
        let env = env_of(&container(&cc));
        assert_eq!(
            secret_file(&cc, "redis-url"),
            ("my-redis".into(), "uri".into(), "url".into())
        );
        assert_eq!(value(&env, "CHAT_REDIS_CLUSTER"), Some("true"));
    }

    #[test]
    fn external_redis_without_cluster_sets_no_flag() {
        let cc = with_spec("redis: {external: {urlSecretRef: {name: my-redis, key: uri}}}");
        assert!(!env_of(&container(&cc)).contains_key("CHAT_REDIS_CLUSTER"));
    }

    #[test]
    fn openai_key_is_a_file_with_only_that_key() {
        let cc = with_spec(
            "ai: {provider: openai, model: gpt-4o, baseUrl: 'https://api.example/v1', apiKeySecretRef: {name: openai, key: apiKey}}",
        );
        let pod = pod(&cc);
        let env = env_of(&pod.containers[0]);
        assert_eq!(value(&env, "CHAT_AI_PROVIDER"), Some("openai"));
        assert_eq!(value(&env, "CHAT_OPENAI_MODEL"), Some("gpt-4o"));
        assert_eq!(
            value(&env, "CHAT_OPENAI_BASE_URL"),
            Some("https://api.example/v1")
        );
        assert_eq!(
            value(&env, "CHAT_OPENAI_API_KEY_FILE"),
            Some("/var/run/chatscale/ai/api-key")
        );
        assert!(!env.contains_key("CHAT_OPENAI_API_KEY"));
        let volumes = pod.volumes.unwrap();
        let secret = volumes
            .iter()
            .find_map(|v| {
                v.secret
                    .clone()
                    .filter(|s| s.secret_name.as_deref() == Some("openai"))
            })
            .unwrap();
        let items = secret.items.unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(
            (items[0].key.as_str(), items[0].path.as_str()),
            ("apiKey", "api-key")
        );
        let mounts = pod.containers[0].volume_mounts.clone().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m.mount_path == "/var/run/chatscale/ai" && m.read_only == Some(true))
        );
    }

    #[test]
    fn openai_without_key_needs_a_base_url() {
        let err = objects(&with_spec("ai: {provider: openai}"), &generated()).unwrap_err();
        assert!(err.0.contains("apiKeySecretRef"), "{err}");
        let cc = with_spec("ai: {provider: openai, baseUrl: 'http://ollama:11434/v1'}");
        let env = env_of(&container(&cc));
        assert_eq!(
            value(&env, "CHAT_OPENAI_BASE_URL"),
            Some("http://ollama:11434/v1")
        );
        assert!(!env.contains_key("CHAT_OPENAI_API_KEY_FILE"));
    }

    #[test]
    fn anthropic_gets_its_own_variables_and_the_key_as_a_file() {
        let cc = with_spec(
            "ai: {provider: anthropic, model: claude-sonnet-4-5, apiKeySecretRef: {name: anthropic, key: apiKey}}",
        );
        let env = env_of(&container(&cc));
        assert_eq!(value(&env, "CHAT_AI_PROVIDER"), Some("anthropic"));
        assert_eq!(
            value(&env, "CHAT_ANTHROPIC_MODEL"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(
            value(&env, "CHAT_ANTHROPIC_API_KEY_FILE"),
            Some("/var/run/chatscale/ai/api-key")
        );
        assert!(env.keys().all(|k| !k.starts_with("CHAT_OPENAI")));
        assert!(!env.contains_key("CHAT_ANTHROPIC_API_KEY"));
        let err = objects(&with_spec("ai: {provider: anthropic}"), &generated()).unwrap_err();
        assert!(
            err.0
                .contains("ai.provider anthropic needs ai.apiKeySecretRef"),
            "{err}"
        );
    }

    #[test]
    fn trusted_proxies_must_be_addresses_or_ranges() {
        let cc = with_spec("limits: {trustedProxies: [10.0.0.0/8, 10.1.2.3, \"fd00::/8\"]}");
        let env = env_of(&container(&cc));
        assert_eq!(
            value(&env, "CHAT_TRUSTED_PROXIES"),
            Some("10.0.0.0/8,10.1.2.3,fd00::/8")
        );
        let bad = with_spec("limits: {trustedProxies: [10.0.0.0/8, the-ingress]}");
        let err = objects(&bad, &generated()).unwrap_err();
        assert!(
            err.0
                .contains("\"the-ingress\" is not an IP address or CIDR range"),
            "{err}"
        );
    }

    #[test]
    fn auth_is_off_and_unset_by_default() {
        let env = env_of(&container(&cluster(MINIMAL)));
        assert!(
            env.keys()
                .all(|k| !k.starts_with("CHAT_JWT") && k != "CHAT_AUTH")
        );
        assert!(
            pod(&cluster(MINIMAL))
                .volumes
                .unwrap()
                .iter()
                .all(|v| v.name != "jwt-key")
        );
    }

    #[test]
    fn jwt_public_keys_are_a_read_only_file_with_only_that_key() {
        let cc = with_spec(
            r#"auth: {jwtPublicKeysRef: {name: idp-keys, key: jwks.json}, issuer: "https://idp.example", audience: chat, roomsClaim: chat_rooms, allowedOrigins: ["https://app.example", "https://admin.example"]}"#,
        );
        let c = container(&cc);
        let env = env_of(&c);
        assert_eq!(
            value(&env, "CHAT_JWT_PUBLIC_KEY_FILE"),
            Some("/var/run/chatscale/jwt/public-keys")
        );
        assert_eq!(value(&env, "CHAT_JWT_ISSUER"), Some("https://idp.example"));
        assert_eq!(value(&env, "CHAT_JWT_AUDIENCE"), Some("chat"));
        assert_eq!(value(&env, "CHAT_JWT_ROOMS_CLAIM"), Some("chat_rooms"));
        assert_eq!(
            value(&env, "CHAT_ALLOWED_ORIGINS"),
            Some("https://app.example,https://admin.example")
        );
        assert!(
            !env.contains_key("CHAT_AUTH"),
            "required follows from the key"
        );
        let volume = pod(&cc)
            .volumes
            .unwrap()
            .into_iter()
            .find(|v| v.name == "jwt-key")
            .unwrap();
        let secret = volume.secret.unwrap();
        assert_eq!(secret.secret_name.as_deref(), Some("idp-keys"));
        let items = secret.items.unwrap();
        assert_eq!(
            (items.len(), items[0].key.as_str(), items[0].path.as_str()),
            (1, "jwks.json", "public-keys")
        );
        assert_eq!(secret.default_mode, Some(SECRET_FILE_MODE));
        let mount = c
            .volume_mounts
            .unwrap()
            .into_iter()
            .find(|m| m.name == "jwt-key")
            .unwrap();
        assert_eq!(
            (mount.mount_path.as_str(), mount.read_only),
            (JWT_DIR, Some(true))
        );
    }

    #[test]
    fn jwt_secret_file_and_explicit_mode() {
        let cc = with_spec("auth: {mode: required, jwtSecretRef: {name: chat-jwt, key: hs256}}");
        let env = env_of(&container(&cc));
        assert_eq!(
            value(&env, "CHAT_JWT_SECRET_FILE"),
            Some("/var/run/chatscale/jwt/secret")
        );
        assert_eq!(value(&env, "CHAT_AUTH"), Some("required"));
        // The pod spec names the Secret, never its value.
        let json = serde_json::to_string(&pod(&cc)).unwrap();
        assert!(json.contains("chat-jwt") && json.contains("hs256"));
    }

    #[test]
    fn auth_spec_errors() {
        let both = with_spec(
            "auth: {jwtSecretRef: {name: a, key: b}, jwtPublicKeysRef: {name: c, key: d}}",
        );
        assert!(Wiring::new(&both).is_err());
        let keyless = with_spec("auth: {mode: required}");
        assert!(
            Wiring::new(&keyless)
                .err()
                .unwrap()
                .0
                .contains("needs auth.jwtSecretRef")
        );
        let off = with_spec("auth: {mode: \"off\"}");
        assert_eq!(value(&env_of(&container(&off)), "CHAT_AUTH"), Some("off"));
    }

    #[test]
    fn demo_ignores_openai_settings() {
        let cc =
            with_spec("ai: {provider: demo, model: x, apiKeySecretRef: {name: openai, key: k}}");
        let pod = pod(&cc);
        assert!(!env_of(&pod.containers[0]).contains_key("CHAT_OPENAI_MODEL"));
        let volumes: Vec<String> = pod.volumes.unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(volumes, ["redis-url", "admin-token"]);
    }

    #[test]
    fn too_long_key_prefix_is_a_spec_error() {
        let name = "n".repeat(60);
        let cc = cluster(&MINIMAL.replace("name: team", &format!("name: {name}")));
        assert!(
            objects(&cc, &generated())
                .unwrap_err()
                .0
                .contains("key prefix")
        );
    }

    #[test]
    fn service_exposes_only_the_public_port() {
        let cc = cluster(MINIMAL);
        let (_, _, service) = built(&cc);
        assert_eq!(service.metadata.name.as_deref(), Some("team-chat"));
        let spec = service.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
        assert_eq!(spec.selector, Some(names::selector(&cc, names::CHAT)));
        let ports = spec.ports.unwrap();
        assert_eq!(ports.len(), 1);
        assert_eq!(
            (ports[0].name.as_deref(), ports[0].port),
            (Some("http"), 80)
        );
        assert_eq!(
            ports[0].target_port,
            Some(IntOrString::String("http".into()))
        );
        assert_eq!(spec.session_affinity.as_deref(), Some("None"));
        assert_eq!(spec.session_affinity_config, None);
    }

    #[test]
    fn client_ip_affinity() {
        let yaml = MINIMAL.replace(
            "host: chat.example.com",
            "host: chat.example.com, serviceAffinity: ClientIP",
        );
        let spec = built(&cluster(&yaml)).2.spec.unwrap();
        assert_eq!(spec.session_affinity.as_deref(), Some("ClientIP"));
        let config = spec.session_affinity_config.unwrap().client_ip.unwrap();
        assert_eq!(config.timeout_seconds, Some(10_800));
    }

    #[test]
    fn service_carries_the_routing_annotations() {
        let cc = cluster(MINIMAL);
        let expected = super::super::routing::service_annotations(&cc);
        let annotations = built(&cc).2.metadata.annotations.unwrap_or_default();
        assert_eq!(annotations, expected);
    }

    #[test]
    fn output_is_deterministic() {
        let cc = with_spec("ai: {provider: openai, apiKeySecretRef: {name: openai, key: k}}");
        let first = serde_json::to_string(&objects(&cc, &generated()).unwrap()).unwrap();
        let second = serde_json::to_string(&objects(&cc, &generated()).unwrap()).unwrap();
        assert_eq!(first, second);
    }
}
