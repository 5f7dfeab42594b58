//! The desired state of a chat cluster. Every field has a doc comment: it
//! becomes the `kubectl explain` text.

use chatscale_contract::settings;
use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ChatClusterStatus;

/// A Socket.IO chat cluster for AI conversations: chat-server pods, Redis,
/// sticky routing, and autoscaling on connections and Redis throughput.
// Several printer columns share `type_ = "integer"`: not a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "chatscale.dev",
    version = "v1alpha1",
    kind = "ChatCluster",
    doc = "A chat cluster: chat-server pods, Redis, sticky routing and autoscaling.",
    // Owned names add up to 17 characters (`-redis-auth`, StatefulSet pod
    // suffixes and labels) and must stay within Kubernetes' 63.
    validation = Rule::new("size(self.metadata.name) <= 46").message("ChatCluster names are at most 46 characters"),
    namespaced,
    shortname = "chat",
    category = "chatscale",
    status = "ChatClusterStatus",
    cel,
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(name = "Ready", type_ = "integer", json_path = ".status.readyReplicas"),
    printcolumn(
        name = "Connections",
        type_ = "integer",
        json_path = ".status.connections"
    ),
    printcolumn(
        name = "Redis ops/s",
        type_ = "integer",
        json_path = ".status.redisOpsPerSec"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ChatClusterSpec {
    /// chat-server container image.
    #[serde(default = "default_image")]
    pub image: String,

    /// chat-server pods. With autoscaling on, the operator sets this within
    /// `autoscaling.minReplicas`..`maxReplicas`; with it off, you do (or
    /// `kubectl scale`, or an HPA/KEDA through the scale subresource).
    #[serde(default = "default_replicas")]
    #[x_kube(validation = Rule::new("self >= 1").message("replicas must be at least 1"))]
    pub replicas: i32,

    /// Compute resources of each chat-server container.
    #[serde(default = "default_chat_resources")]
    pub resources: ResourceRequirements,

    /// Where room state and broadcasts live: a Redis the operator runs
    /// (`managed`, the default) or one you run (`external`). Exactly one.
    #[serde(default)]
    pub redis: RedisSpec,

    /// How users reach the cluster, with sticky sessions.
    pub routing: RoutingSpec,

    /// Scaling on connections and Redis throughput.
    #[serde(default)]
    pub autoscaling: AutoscalingSpec,

    /// How pods are emptied before they are removed.
    #[serde(default)]
    pub drain: DrainSpec,

    /// The model that answers `ai-query`.
    #[serde(default)]
    pub ai: AiSpec,

    /// Who may connect: JWTs checked at the Socket.IO handshake, the rooms
    /// they grant, and the browser origins allowed. Off (demo mode) unless a
    /// key is referenced.
    #[serde(default)]
    pub auth: AuthSpec,

    /// Abuse limits of every chat-server; unset fields keep chat-server's
    /// defaults (see the chat-server README).
    #[serde(default)]
    pub limits: LimitsSpec,
}

fn default_image() -> String {
    "ghcr.io/chatscale/chat-server:0.1.0".into()
}

fn default_replicas() -> i32 {
    2
}

fn default_chat_resources() -> ResourceRequirements {
    resources("250m", "256Mi", "1Gi")
}

/// Requests of `cpu` and `memory`, and a memory limit (no CPU limit: throttling hurts latency).
fn resources(cpu: &str, memory: &str, memory_limit: &str) -> ResourceRequirements {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    let quantities = |pairs: &[(&str, &str)]| {
        Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect(),
        )
    };
    ResourceRequirements {
        requests: quantities(&[("cpu", cpu), ("memory", memory)]),
        limits: quantities(&[("memory", memory_limit)]),
        ..Default::default()
    }
}

/// A key of a Secret in the ChatCluster's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretKeyRef {
    /// Secret name.
    pub name: String,
    /// Key inside the Secret.
    pub key: String,
}

/// Redis: exactly one of `managed` and `external`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("has(self.managed) != has(self.external)").message("set exactly one of redis.managed and redis.external"))]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// A single Redis the operator runs (StatefulSet, Service, generated password).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed: Option<ManagedRedis>,
    /// A Redis you run; its URL comes from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedis>,
}

impl Default for RedisSpec {
    fn default() -> Self {
        Self {
            managed: Some(ManagedRedis::default()),
            external: None,
        }
    }
}

/// A Redis StatefulSet run by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ManagedRedis {
    /// Redis image (Redis 7 or newer).
    #[serde(default = "default_redis_image")]
    pub image: String,
    /// Size of the persistent volume for the append-only file. Fixed once the
    /// cluster exists: a StatefulSet's volume claim template cannot change.
    #[serde(default = "default_redis_storage")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("redis.managed.storage cannot change after creation: a StatefulSet's volume claim template is immutable (resize the PersistentVolumeClaim itself)"))]
    pub storage: String,
    /// Compute resources of the Redis container.
    #[serde(default = "default_redis_resources")]
    pub resources: ResourceRequirements,
}

impl Default for ManagedRedis {
    fn default() -> Self {
        Self {
            image: default_redis_image(),
            storage: default_redis_storage(),
            resources: default_redis_resources(),
        }
    }
}

fn default_redis_image() -> String {
    "redis:7.4-alpine".into()
}

fn default_redis_storage() -> String {
    "1Gi".into()
}

fn default_redis_resources() -> ResourceRequirements {
    resources("100m", "256Mi", "1Gi")
}

/// A Redis you run.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalRedis {
    /// Secret key holding the Redis URL, e.g. `redis://:password@redis:6379/0`.
    pub url_secret_ref: SecretKeyRef,
    /// The URL is a seed node of a Redis Cluster (sharded pub/sub).
    #[serde(default)]
    pub cluster: bool,
}

/// Public routing with sticky sessions: an Ingress or a Gateway API HTTPRoute.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!(has(self.ingress) && has(self.gateway))").message("set at most one of routing.ingress and routing.gateway"))]
#[serde(rename_all = "camelCase")]
pub struct RoutingSpec {
    /// Public host name, e.g. `chat.example.com`. The length bound is DNS's,
    /// and it also keeps the API server's cost estimate of the rule small.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("host must be a DNS name"))]
    pub host: String,
    /// Secret with the TLS certificate for `host`; plain HTTP without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret_name: Option<String>,
    /// Route through an Ingress (the default when neither is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressRouting>,
    /// Route through a Gateway API HTTPRoute with cookie session persistence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<GatewayRouting>,
    /// Session affinity of the client Service (`None` or `ClientIP`).
    #[serde(default)]
    pub service_affinity: ServiceAffinity,
    /// Name of the affinity cookie.
    #[serde(default = "default_cookie")]
    pub cookie_name: String,
}

fn default_cookie() -> String {
    "chatscale-affinity".into()
}

/// Session affinity of the client Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ServiceAffinity {
    #[default]
    None,
    ClientIP,
}

/// An Ingress with the session-affinity annotations of one controller.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressRouting {
    /// Which controller reads the Ingress: its annotations differ.
    #[serde(default)]
    pub flavor: IngressFlavor,
    /// `spec.ingressClassName`; the cluster default class when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
}

/// Ingress controllers whose stickiness annotations chatscale knows.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum IngressFlavor {
    /// kubernetes/ingress-nginx and its maintained forks (Chainguard, Forkline).
    #[default]
    IngressNginx,
    /// Traefik's Kubernetes Ingress provider (sticky cookie on the Service).
    Traefik,
    /// jcmoraisjr/haproxy-ingress.
    Haproxy,
}

/// A Gateway API HTTPRoute attached to existing Gateways.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("size(self.parentRefs) >= 1").message("gateway.parentRefs needs at least one Gateway"))]
#[serde(rename_all = "camelCase")]
pub struct GatewayRouting {
    /// Gateways (or listeners of them) the route attaches to.
    pub parent_refs: Vec<ParentRef>,
}

/// A Gateway the HTTPRoute attaches to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// Gateway name.
    pub name: String,
    /// Gateway namespace; the ChatCluster's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Listener name on the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// Autoscaling on connections and Redis throughput. The vocabulary
/// (stabilization windows, step policies) is the HorizontalPodAutoscaler's.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("1 <= self.minReplicas && self.minReplicas <= self.maxReplicas").message("autoscaling needs 1 <= minReplicas <= maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Let the operator set `replicas`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Never fewer pods than this.
    #[serde(default = "default_min")]
    pub min_replicas: i32,
    /// Never more pods than this.
    #[serde(default = "default_max")]
    pub max_replicas: i32,
    /// Socket.IO connections one pod is sized for.
    #[serde(default = "default_connections")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000000").message("targetConnectionsPerPod must be 1..1000000"))]
    pub target_connections_per_pod: i32,
    /// Redis operations per second that one pod's traffic is sized for; 0 ignores Redis.
    #[serde(default = "default_redis_ops")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 10000000").message("targetRedisOpsPerPod must be 0..10000000"))]
    pub target_redis_ops_per_pod: i32,
    /// Redis operations per second above which Redis itself is the bottleneck
    /// (condition RedisSaturated; consider Redis Cluster mode).
    #[serde(default = "default_redis_ceiling")]
    #[x_kube(validation = Rule::new("self >= 1").message("redisOpsCeiling must be at least 1"))]
    pub redis_ops_ceiling: i32,
    /// Seconds between two decisions.
    #[serde(default = "default_interval")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 600").message("intervalSeconds must be 1..600"))]
    pub interval_seconds: i32,
    /// No change while load per pod is within this fraction of the target (0.1 = 10%).
    #[serde(default = "default_tolerance")]
    #[x_kube(validation = Rule::new("self >= 0.0 && self < 1.0").message("tolerance must be in [0, 1)"))]
    pub tolerance: f64,
    /// How fast to scale up and down, as in the HorizontalPodAutoscaler's `behavior`.
    #[serde(default)]
    pub behavior: ScalingBehavior,
    /// Moving connections off pods far above the mean (connections are
    /// sticky: after a scale-up the old pods keep theirs).
    #[serde(default)]
    pub rebalance: RebalanceSpec,
}

/// Rebalancing: a ready pod more than `deadZonePercent` above the mean of
/// the ready pods refuses new sessions at once (they go to the other pods;
/// nobody reconnects), and if it is still above the zone after
/// `afterSeconds`, sheds connections at `connectionsPerSecond` until it is
/// halfway back into the zone; its clients reconnect to other pods and
/// resume. While it refuses or sheds it is not Ready. Never while a
/// scale-down drains.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceSpec {
    /// Rebalance at all (when false, the autoscaler sizes for the hottest pod instead).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// How far above the mean a pod may be before it refuses new sessions (and later sheds), in percent.
    #[serde(default = "default_dead_zone")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("rebalance.deadZonePercent must be 1..1000"))]
    pub dead_zone_percent: i32,
    /// Connections per second one pod closes while it sheds.
    #[serde(default = "default_shed_rate")]
    #[x_kube(validation = shed_rate_rule())]
    pub connections_per_second: i32,
    /// Seconds a pod stays above the zone, refusing new sessions, before it sheds.
    #[serde(default = "default_rebalance_after")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 3600").message("rebalance.afterSeconds must be 0..3600"))]
    pub after_seconds: i32,
}

impl Default for RebalanceSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            dead_zone_percent: default_dead_zone(),
            connections_per_second: default_shed_rate(),
            after_seconds: default_rebalance_after(),
        }
    }
}

fn default_dead_zone() -> i32 {
    15
}

fn default_shed_rate() -> i32 {
    50
}

fn default_rebalance_after() -> i32 {
    120
}

/// The shed rates chat-server accepts.
fn shed_rate_rule() -> kube::core::Rule {
    let max = chatscale_contract::admin::SHED_RATE_MAX;
    kube::core::Rule::new(format!("self >= 1 && self <= {max}"))
        .message(format!("rebalance.connectionsPerSecond must be 1..{max}").as_str())
}

impl Default for AutoscalingSpec {
    fn default() -> Self {
        Self {
            enabled: true,
            min_replicas: default_min(),
            max_replicas: default_max(),
            target_connections_per_pod: default_connections(),
            target_redis_ops_per_pod: default_redis_ops(),
            redis_ops_ceiling: default_redis_ceiling(),
            interval_seconds: default_interval(),
            tolerance: default_tolerance(),
            behavior: ScalingBehavior::default(),
            rebalance: RebalanceSpec::default(),
        }
    }
}

/// Scale-up and scale-down rules.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalingBehavior {
    /// Defaults: no stabilization; at most +100% or +4 pods per 15 s, whichever is more.
    #[serde(default = "ScalingRules::up")]
    pub scale_up: ScalingRules,
    /// Defaults: the highest recommendation of the last 300 s; at most -100% per 15 s.
    #[serde(default = "ScalingRules::down")]
    pub scale_down: ScalingRules,
}

impl Default for ScalingBehavior {
    fn default() -> Self {
        Self {
            scale_up: ScalingRules::up(),
            scale_down: ScalingRules::down(),
        }
    }
}

/// Rules for one direction.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingRules {
    /// Use the most conservative recommendation of this many past seconds
    /// (the lowest when scaling up, the highest when scaling down).
    #[x_kube(validation = Rule::new("self >= 0 && self <= 3600").message("stabilizationWindowSeconds must be 0..3600"))]
    pub stabilization_window_seconds: i32,
    /// Which policy applies when several do: `Max` (the biggest change), `Min`, or `Disabled` (never in this direction).
    #[serde(default)]
    pub select_policy: SelectPolicy,
    /// Limits on how many pods may change per period.
    pub policies: Vec<ScalingPolicy>,
}

impl ScalingRules {
    fn up() -> Self {
        Self {
            stabilization_window_seconds: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![
                ScalingPolicy {
                    type_: PolicyType::Percent,
                    value: 100,
                    period_seconds: 15,
                },
                ScalingPolicy {
                    type_: PolicyType::Pods,
                    value: 4,
                    period_seconds: 15,
                },
            ],
        }
    }

    fn down() -> Self {
        Self {
            stabilization_window_seconds: 300,
            select_policy: SelectPolicy::Max,
            policies: vec![ScalingPolicy {
                type_: PolicyType::Percent,
                value: 100,
                period_seconds: 15,
            }],
        }
    }
}

/// How to combine several policies.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum SelectPolicy {
    #[default]
    Max,
    Min,
    Disabled,
}

/// At most `value` pods (or percent of the pods) per `periodSeconds`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ScalingPolicy {
    /// `Pods` or `Percent`.
    #[serde(rename = "type")]
    pub type_: PolicyType,
    /// How many pods, or what percent of them.
    #[x_kube(validation = Rule::new("self >= 1").message("a scaling policy value must be at least 1"))]
    pub value: i32,
    /// Length of the period, in seconds.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1800").message("periodSeconds must be 1..1800"))]
    pub period_seconds: i32,
}

/// Unit of a scaling policy.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PolicyType {
    Pods,
    Percent,
}

fn default_redis_ops() -> i32 {
    2000
}

fn default_redis_ceiling() -> i32 {
    50_000
}

fn default_interval() -> i32 {
    15
}

fn default_tolerance() -> f64 {
    0.1
}

fn yes() -> bool {
    true
}

fn default_min() -> i32 {
    2
}

fn default_max() -> i32 {
    10
}

fn default_connections() -> i32 {
    5000
}

/// How a pod is emptied before removal.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrainSpec {
    /// Longest a drain may take, in seconds; the pod's termination grace period is this plus a margin.
    #[serde(default = "default_drain_timeout")]
    #[x_kube(validation = in_range(settings::DRAIN_TIMEOUT_SECONDS, "drain.timeoutSeconds"))]
    pub timeout_seconds: i32,
    /// At most this many clients disconnected per second.
    #[serde(default = "default_drain_rate")]
    #[x_kube(validation = in_range(settings::DRAIN_RATE, "drain.rate"))]
    pub rate: i32,
    /// When a scale-down removes several pods, each starts draining this many
    /// seconds after the previous one, so their clients do not reconnect at once.
    #[serde(default = "default_drain_stagger")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 600").message("drain.staggerSeconds must be 0..600"))]
    pub stagger_seconds: i32,
}

impl Default for DrainSpec {
    fn default() -> Self {
        Self {
            timeout_seconds: default_drain_timeout(),
            rate: default_drain_rate(),
            stagger_seconds: default_drain_stagger(),
        }
    }
}

fn default_drain_timeout() -> i32 {
    settings::DRAIN_TIMEOUT_SECONDS.default as i32
}

fn default_drain_stagger() -> i32 {
    10
}

fn default_drain_rate() -> i32 {
    settings::DRAIN_RATE.default as i32
}

/// The CEL rule that keeps a field in the range chat-server accepts.
fn in_range(count: settings::Count, field: &str) -> kube::core::Rule {
    let (rule, message) = count.cel(field);
    kube::core::Rule::new(rule).message(message.as_str())
}

/// The AI model behind `ai-query`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AiSpec {
    /// `demo` (built in, no network), `openai` (any OpenAI-compatible endpoint)
    /// or `anthropic` (Claude through the Anthropic Messages API).
    #[serde(default)]
    pub provider: AiProvider,
    /// API root: for `openai` e.g. `https://api.openai.com/v1` (the default),
    /// for `anthropic` e.g. `https://api.anthropic.com` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Secret key holding the API key; mounted as a file, never put in env or logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Longest answer, in tokens (`anthropic` only: the Messages API requires
    /// it; 1024 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = in_range(settings::ANTHROPIC_MAX_TOKENS, "ai.maxTokens"))]
    pub max_tokens: Option<i32>,
}

/// Abuse limits, per socket and per user. Event budgets are per chat-server
/// process; concurrent AI answers are counted over the whole cluster.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// Events per second one socket may send (0: no limit; default 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = in_range(settings::EVENTS_PER_SEC, "limits.eventsPerSec"))]
    pub events_per_sec: Option<i32>,
    /// Events one socket may send at once above its rate (default 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = in_range(settings::EVENTS_BURST, "limits.eventsBurst"))]
    pub events_burst: Option<i32>,
    /// Events per second one authenticated user may send over all their
    /// sockets on one server (0: no limit; default 400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = in_range(settings::USER_EVENTS_PER_SEC, "limits.userEventsPerSec"))]
    pub user_events_per_sec: Option<i32>,
    /// Refusals after which a flooding socket is disconnected (0: never; default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = in_range(settings::FLOOD_DISCONNECT_AFTER, "limits.floodDisconnectAfter"))]
    pub flood_disconnect_after: Option<i32>,
    /// AI answers one user may have running at once, cluster-wide (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = in_range(settings::MAX_AI_ANSWERS_PER_USER, "limits.maxAiAnswersPerUser"))]
    pub max_ai_answers_per_user: Option<i32>,
    /// AI answers one room may have running at once, cluster-wide (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = in_range(settings::MAX_AI_ANSWERS_PER_ROOM, "limits.maxAiAnswersPerRoom"))]
    pub max_ai_answers_per_room: Option<i32>,
    /// Rooms one socket may be in at once (default 32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = in_range(settings::MAX_ROOMS_PER_SOCKET, "limits.maxRoomsPerSocket"))]
    pub max_rooms_per_socket: Option<i32>,
    /// New connections per minute from one client address (0: no limit, the
    /// default). Behind the Ingress or Gateway every connection comes from the
    /// proxy: list the proxies in `trustedProxies` so the limit sees clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = in_range(settings::CONNECTIONS_PER_MINUTE_PER_IP, "limits.connectionsPerMinutePerIp"))]
    pub connections_per_minute_per_ip: Option<i32>,
    /// Proxies (IP addresses or CIDR ranges, e.g. the pod network) whose
    /// `X-Forwarded-For` names the client; anyone else's is ignored. Checked by
    /// the operator (the CEL IP library is missing from older API servers).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32), inner(length(max = 64)))]
    pub trusted_proxies: Vec<String>,
}

/// AI providers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AiProvider {
    #[default]
    Demo,
    Openai,
    Anthropic,
}

/// Authentication of chat clients. The keys come from Secrets, mounted into
/// the chat-server pods as read-only files; they never appear in the pod spec,
/// in status, in Events or in logs.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!(has(self.jwtSecretRef) && has(self.jwtPublicKeysRef))").message("set at most one of auth.jwtSecretRef and auth.jwtPublicKeysRef"))]
#[x_kube(validation = Rule::new("!has(self.mode) || self.mode != 'required' || has(self.jwtSecretRef) || has(self.jwtPublicKeysRef)").message("auth.mode required needs auth.jwtSecretRef or auth.jwtPublicKeysRef"))]
#[serde(rename_all = "camelCase")]
pub struct AuthSpec {
    /// `required` (every connection needs a valid token) or `off` (demo mode:
    /// anyone may use any room). Default: `required` when a key is referenced,
    /// `off` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<AuthMode>,
    /// Secret key holding the HS256 shared secret (at least 32 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_secret_ref: Option<SecretKeyRef>,
    /// Secret key holding the RS256/ES256 public key(s): one PEM public key, or
    /// a JWKS document (`{"keys": [...]}`, matched by `kid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt_public_keys_ref: Option<SecretKeyRef>,
    /// Required `iss` of every token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Required `aud` of every token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// The claim that lists the rooms a token grants (`*` suffix wildcards);
    /// `rooms` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms_claim: Option<String>,
    /// Browser origins allowed besides the cluster's own host, e.g.
    /// `https://app.example.com`, or `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
}

/// Whether chat clients need a token.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Off,
    Required,
}

#[cfg(test)]
mod auth_tests {
    use super::*;

    fn cluster(auth: &str) -> ChatCluster {
        let yaml = format!(
            "apiVersion: chatscale.dev/v1alpha1\nkind: ChatCluster\nmetadata: {{name: team, namespace: apps}}\nspec: {{routing: {{host: chat.example.com}}, auth: {auth}}}\n"
        );
        serde_saphyr::from_str(&yaml).expect("test manifest parses")
    }

    #[test]
    fn auth_rules_are_enforced_by_cel() {
        let refused = |auth: &str| cluster(auth).validate_cel().unwrap_err().to_string();
        assert!(
            refused("{jwtSecretRef: {name: a, key: b}, jwtPublicKeysRef: {name: c, key: d}}")
                .contains("at most one of auth.jwtSecretRef and auth.jwtPublicKeysRef")
        );
        assert!(refused("{mode: required}").contains("auth.mode required needs"));
        for ok in [
            "{}",
            "{mode: \"off\"}",
            "{jwtSecretRef: {name: a, key: b}}",
            "{mode: required, jwtPublicKeysRef: {name: c, key: d}, issuer: i, audience: a}",
        ] {
            assert!(cluster(ok).validate_cel().is_ok(), "{ok}");
        }
    }

    #[test]
    fn managed_redis_storage_is_fixed_once_created() {
        let with_storage = |storage: &str| {
            let yaml = format!(
                "apiVersion: chatscale.dev/v1alpha1\nkind: ChatCluster\nmetadata: {{name: team, namespace: apps}}\nspec: {{routing: {{host: chat.example.com}}, redis: {{managed: {{storage: {storage}}}}}}}\n"
            );
            serde_saphyr::from_str::<ChatCluster>(&yaml).expect("test manifest parses")
        };
        let (old, bigger) = (with_storage("1Gi"), with_storage("5Gi"));
        let refused = bigger.validate_cel_update(&old).unwrap_err().to_string();
        assert!(
            refused.contains("redis.managed.storage cannot change"),
            "{refused}"
        );
        assert!(
            bigger.validate_cel().is_ok(),
            "a new cluster may pick any size"
        );
        let mut other_change = old.clone();
        other_change.spec.redis.managed.as_mut().unwrap().image = "redis:7.2".into();
        assert!(other_change.validate_cel_update(&old).is_ok());
    }

    #[test]
    fn limits_out_of_range_are_refused_by_cel() {
        let refused = |spec: &str| {
            let yaml = format!(
                "apiVersion: chatscale.dev/v1alpha1\nkind: ChatCluster\nmetadata: {{name: team, namespace: apps}}\nspec: {{routing: {{host: chat.example.com}}, {spec}}}\n"
            );
            let cc: ChatCluster = serde_saphyr::from_str(&yaml).expect("test manifest parses");
            cc.validate_cel().err().map(|e| e.to_string())
        };
        assert!(
            refused("limits: {maxAiAnswersPerUser: 0}")
                .unwrap()
                .contains("limits.maxAiAnswersPerUser must be 1..100000")
        );
        assert!(
            refused("limits: {eventsPerSec: -1}")
                .unwrap()
                .contains("limits.eventsPerSec must be 0..1000000")
        );
        assert!(
            refused("ai: {maxTokens: 0}")
                .unwrap()
                .contains("ai.maxTokens must be 1..128000")
        );
        assert_eq!(
            refused(
                "limits: {eventsPerSec: 0, maxRoomsPerSocket: 100, trustedProxies: [10.0.0.0/8, 10.1.2.3, \"fd00::/8\"]}, ai: {maxTokens: 4096}"
            ),
            None
        );
    }

    #[test]
    fn auth_defaults_to_off_with_nothing_set() {
        let cc = cluster("{}");
        assert_eq!(cc.spec.auth, AuthSpec::default());
        assert_eq!(cc.spec.auth.mode, None);
    }
}
