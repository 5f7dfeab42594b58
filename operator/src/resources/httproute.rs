//! A typed subset of the Gateway API `HTTPRoute` (`gateway.networking.k8s.io/v1`).
//!
//! k8s-openapi only covers the built-in Kubernetes APIs, and the operator does
//! not want a dependency on a generated Gateway API crate for one object, so
//! this file declares just the fields the routing builder emits, with the
//! exact JSON names of the upstream Go types (`apis/v1/httproute_types.go` and
//! `apis/v1/shared_types.go` of kubernetes-sigs/gateway-api; field list
//! checked against docs/routing.md R6.2). Optional fields are skipped
//! when unset, so the serialized object carries only what the builder chose
//! and the API server's CRD defaults fill in the rest.
//!
//! `sessionPersistence` uses the *released* shape (v1.1.0 – v1.6.1:
//! `sessionName`, `type`, `absoluteTimeout`, `cookieConfig.lifetimeType`),
//! docs/routing.md R6.1/R6.2. `idleTimeout` is deliberately absent: it was removed
//! in v1.6.0 (R6.1). The post-v1.6.1 `cookie`/`header` union is unreleased
//! (R6.1, R10 item 2) and is not modelled.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of an HTTPRoute (subset of `HTTPRouteSpec`).
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    namespaced
)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteSpec {
    /// Gateways (or listeners of them) the route attaches to (`CommonRouteSpec.parentRefs`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parent_refs: Vec<ParentReference>,
    /// Host header values the route matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Routing rules (1..16 when present; absent means the CRD default catch-all rule).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<HTTPRouteRule>,
}

/// A parent (normally a Gateway) of the route (`ParentReference`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// API group of the parent; CRD default `gateway.networking.k8s.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind of the parent; CRD default `Gateway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace of the parent; the route's namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the parent.
    pub name: String,
    /// Listener name on the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Listener port on the Gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// One routing rule (`HTTPRouteRule`, without filters, timeouts and retry).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteRule {
    /// Rule name, unique within the route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Request matches; any one of them selects the rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HTTPRouteMatch>,
    /// Where matching requests go.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<HTTPBackendRef>,
    /// Session persistence (experimental channel only, docs/routing.md R6.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<SessionPersistence>,
}

/// A request match (`HTTPRouteMatch`, path only).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteMatch {
    /// Path match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HTTPPathMatch>,
}

/// A path match (`HTTPPathMatch`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPPathMatch {
    /// How `value` is compared; CRD default `PathPrefix`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<PathMatchType>,
    /// The path; CRD default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// `PathMatchType`: the literal enum values of the Gateway API.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PathMatchType {
    Exact,
    PathPrefix,
    RegularExpression,
}

/// A backend of a rule (`HTTPBackendRef` = `BackendRef` inline, without filters).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPBackendRef {
    /// API group of the backend; CRD default `""` (core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind of the backend; CRD default `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name of the backend.
    pub name: String,
    /// Namespace of the backend; the route's namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Service port (required for a Service backend).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Share of the traffic among the rule's backends; CRD default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
}

/// `SessionPersistence`, released shape v1.1.0 – v1.6.1 (docs/routing.md R6.2).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistence {
    /// Cookie (or header) name, at most 128 characters (R6.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
    /// Gateway API Duration (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`, R6.2); required
    /// with `lifetimeType: Permanent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_timeout: Option<String>,
    /// `Cookie` (Core) or `Header` (Extended); CRD default `Cookie`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<SessionPersistenceType>,
    /// Cookie attributes; only with `type: Cookie`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_config: Option<CookieConfig>,
}

/// `SessionPersistenceType` (R9: `Cookie` / `Header`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum SessionPersistenceType {
    Cookie,
    Header,
}

/// `CookieConfig` (R6.2).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CookieConfig {
    /// `Session` (browser-session cookie) or `Permanent`; CRD default `Session`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_type: Option<CookieLifetimeType>,
}

/// `CookieLifetimeType` (R9: `Permanent` / `Session`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CookieLifetimeType {
    Permanent,
    Session,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;
    use serde_json::json;

    #[test]
    fn type_meta_is_the_gateway_api_v1_httproute() {
        assert_eq!(HTTPRoute::api_version(&()), "gateway.networking.k8s.io/v1");
        assert_eq!(HTTPRoute::kind(&()), "HTTPRoute");
        assert_eq!(HTTPRoute::plural(&()), "httproutes");
    }

    #[test]
    fn serializes_with_the_upstream_field_names_and_skips_unset_fields() {
        let spec = HTTPRouteSpec {
            parent_refs: vec![ParentReference {
                name: "gw".into(),
                section_name: Some("https".into()),
                ..Default::default()
            }],
            hostnames: vec!["chat.example.com".into()],
            rules: vec![HTTPRouteRule {
                matches: vec![HTTPRouteMatch {
                    path: Some(HTTPPathMatch {
                        type_: Some(PathMatchType::PathPrefix),
                        value: Some("/".into()),
                    }),
                }],
                backend_refs: vec![HTTPBackendRef {
                    name: "svc".into(),
                    port: Some(80),
                    ..Default::default()
                }],
                session_persistence: Some(SessionPersistence {
                    session_name: Some("aff".into()),
                    type_: Some(SessionPersistenceType::Cookie),
                    cookie_config: Some(CookieConfig {
                        lifetime_type: Some(CookieLifetimeType::Session),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        };
        assert_eq!(
            serde_json::to_value(&spec).unwrap(),
            json!({
                "parentRefs": [{"name": "gw", "sectionName": "https"}],
                "hostnames": ["chat.example.com"],
                "rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": "svc", "port": 80}],
                    "sessionPersistence": {
                        "sessionName": "aff",
                        "type": "Cookie",
                        "cookieConfig": {"lifetimeType": "Session"}
                    }
                }]
            })
        );
        let back: HTTPRouteSpec =
            serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }
}
