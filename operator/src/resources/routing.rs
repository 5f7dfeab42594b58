//! Public routing of a chat cluster with sticky sessions.
//!
//! Socket.IO starts every session with HTTP long-polling and only then
//! upgrades to a WebSocket; all requests of one Engine.IO session must reach
//! the same pod, or the client gets HTTP 400 "Session ID unknown"
//! (docs/routing.md R0). This file builds the one object that gives
//! users that stickiness: a Gateway API `HTTPRoute` when `routing.gateway` is
//! set, otherwise an `Ingress` with the cookie-affinity settings of the chosen
//! controller. Only settings marked verified (V) in docs/routing.md are emitted;
//! each carries the section it comes from.
//!
//! Cross-origin pages: the affinity cookie is only sent when the Socket.IO
//! server allows `credentials: true` and the client sets `withCredentials`
//! (docs/routing.md R0); that is the chat-server's concern, not this builder's.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use kube::{ResourceExt, api::DynamicObject};

use super::httproute::{
    CookieConfig, CookieLifetimeType, HTTPBackendRef, HTTPPathMatch, HTTPRoute, HTTPRouteMatch,
    HTTPRouteRule, HTTPRouteSpec, ParentReference, PathMatchType, SessionPersistence,
    SessionPersistenceType,
};
use super::{SpecError, names};
use crate::api::{ChatCluster, GatewayRouting, IngressFlavor, IngressRouting};

/// Port of the chat client Service (`names::chat`, port name `http`) that
/// the Ingress and the HTTPRoute send traffic to.
pub const CLIENT_SERVICE_PORT: i32 = 80;

/// The path routed to the chat cluster: `/` covers both the Socket.IO
/// endpoint `/socket.io/` (docs/routing.md R0) and the demo page.
const ROOT_PATH: &str = "/";

/// Longest `sessionPersistence.sessionName` the Gateway API accepts (docs/routing.md R6.2).
const MAX_COOKIE_NAME: usize = 128;

const NGINX: &str = "nginx.ingress.kubernetes.io/";
const TRAEFIK: &str = "traefik.ingress.kubernetes.io/service.sticky.cookie";
const HAPROXY: &str = "haproxy-ingress.github.io/";

/// The routing object of `cc`: an `HTTPRoute` named like the ChatCluster when
/// `routing.gateway` is set, otherwise an `Ingress` of that name (flavor
/// ingress-nginx when `routing.ingress` is absent).
pub fn objects(cc: &ChatCluster) -> Result<Vec<DynamicObject>, SpecError> {
    let routing = &cc.spec.routing;
    check_cookie_name(&routing.cookie_name)?;
    let object = match &routing.gateway {
        Some(gateway) => super::dynamic(&http_route(cc, gateway)),
        None => super::dynamic(&ingress(cc, &ingress_routing(cc))),
    };
    Ok(vec![object])
}

/// Annotations the chat client Service must carry for the routing to be
/// sticky. Only Traefik's Kubernetes Ingress provider reads its sticky-cookie
/// settings from the Service instead of the Ingress (docs/routing.md R4.1); every
/// other flavor, and Gateway API, gets an empty map.
pub fn service_annotations(cc: &ChatCluster) -> BTreeMap<String, String> {
    let routing = &cc.spec.routing;
    if routing.gateway.is_some() || ingress_routing(cc).flavor != IngressFlavor::Traefik {
        return BTreeMap::new();
    }
    let mut annotations = super::annotations([
        // docs/routing.md R4.1: `service.sticky.cookie: "true"` enables the cookie (Traefik v2+).
        (TRAEFIK, "true".to_owned()),
        // R4.1: always name the cookie; the default is an opaque hash of the backend (cookie.go).
        (&format!("{TRAEFIK}.name"), routing.cookie_name.clone()),
        // R4.1: `httponly` "true"/"false" (v2+); scripts never need the affinity cookie.
        (&format!("{TRAEFIK}.httponly"), "true".to_owned()),
        // R4.1 and R9: Traefik spells SameSite in lower case: `none` / `lax` / `strict` (v2+).
        (&format!("{TRAEFIK}.samesite"), "lax".to_owned()),
    ]);
    if routing.tls_secret_name.is_some() {
        // R4.1: `secure` "true"/"false" (v2+). Only when the Ingress terminates TLS: a
        // Secure cookie is never sent back over plain HTTP, which would lose stickiness.
        annotations.insert(format!("{TRAEFIK}.secure"), "true".to_owned());
    }
    // Deliberately not emitted (docs/routing.md R4.1, R9): `maxage` needs Traefik v3.0+,
    // `path` v3.3+ (its default is already `/`), `domain` v3.4+. Without `maxage`
    // the cookie lives for the browser session, which outlasts any Socket.IO session.
    annotations
}

/// `routing.ingress`, or the default (ingress-nginx, cluster default class).
fn ingress_routing(cc: &ChatCluster) -> IngressRouting {
    cc.spec.routing.ingress.clone().unwrap_or_default()
}

/// A cookie name every flavor accepts: ingress-nginx allows letters, digits
/// and `-._~/:` (docs/routing.md R2.2), Gateway API at most 128 characters (R6.2);
/// `/` and `:` are left out because RFC 6265 cookie names may not contain them.
fn check_cookie_name(name: &str) -> Result<(), SpecError> {
    let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
    if name.is_empty() || name.len() > MAX_COOKIE_NAME || !name.chars().all(valid_char) {
        return Err(SpecError(format!(
            "routing.cookieName {name:?} must be 1..{MAX_COOKIE_NAME} letters, digits or '-._~'"
        )));
    }
    Ok(())
}

/// The Ingress: one rule for the host, `/` Prefix to the chat Service, TLS
/// when a secret is given, and the flavor's affinity annotations.
fn ingress(cc: &ChatCluster, routing: &IngressRouting) -> Ingress {
    let spec = &cc.spec.routing;
    let mut metadata = super::owned_meta(cc, cc.name_any(), names::CHAT);
    let annotations = ingress_annotations(cc, routing.flavor);
    if !annotations.is_empty() {
        metadata.annotations = Some(annotations);
    }
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: routing.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(spec.host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(ROOT_PATH.into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: names::chat(cc),
                                port: Some(ServiceBackendPort {
                                    number: Some(CLIENT_SERVICE_PORT),
                                    ..Default::default()
                                }),
                            }),
                            ..Default::default()
                        },
                    }],
                }),
            }]),
            tls: spec.tls_secret_name.as_ref().map(|secret| {
                vec![IngressTLS {
                    hosts: Some(vec![spec.host.clone()]),
                    secret_name: Some(secret.clone()),
                }]
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Ingress annotations of a flavor (none for Traefik: see `service_annotations`).
fn ingress_annotations(cc: &ChatCluster, flavor: IngressFlavor) -> BTreeMap<String, String> {
    match flavor {
        IngressFlavor::IngressNginx => ingress_nginx_annotations(cc),
        // docs/routing.md R4.1: Traefik's Ingress provider takes sticky settings from the
        // Service, and there is no per-Ingress timeout annotation (R4.3); WebSocket
        // needs no switch (R4.3).
        IngressFlavor::Traefik => BTreeMap::new(),
        IngressFlavor::Haproxy => haproxy_ingress_annotations(cc),
    }
}

/// kubernetes/ingress-nginx and its forks (Chainguard, Forkline: same affinity
/// keys, docs/routing.md R2.6). Values are strings (R2.1). WebSocket needs no
/// annotation (R2.4). `service-upstream` is left unset: it breaks stickiness (R2.2).
fn ingress_nginx_annotations(cc: &ChatCluster) -> BTreeMap<String, String> {
    let cookie = &cc.spec.routing.cookie_name;
    let pairs = [
        // R2.2 / R9: the only accepted value, lower case.
        ("affinity", "cookie".to_owned()),
        // R2.2: `persistent` never rebalances; `balanced` (the default) moves some
        // sessions when the Deployment scales up, which would break live long-poll
        // sessions (400 "Session ID unknown", R0). Scale-up balance comes from new
        // sessions and from the operator's drains instead.
        ("affinity-mode", "persistent".to_owned()),
        // R2.2: letters, digits and `-._~/:` (checked by `check_cookie_name`).
        ("session-cookie-name", cookie.clone()),
        // R2.2: the default path is the matched Ingress location path (sticky.lua
        // `location_path`); set `/` explicitly so it always covers `/socket.io/`
        // and the page that opens it (R0 rule of thumb).
        ("session-cookie-path", ROOT_PATH.to_owned()),
        // R2.2 / R9: capitalised spelling (the conditional-None logic compares literals).
        ("session-cookie-samesite", "Lax".to_owned()),
        // R2.2: integer seconds, emitted as `Max-Age`: one day.
        ("session-cookie-max-age", "86400".to_owned()),
        // R2.2: after a failed attempt re-pin to another pod instead of retrying the
        // dead one; the Socket.IO client reconnects with a new session anyway.
        ("session-cookie-change-on-failure", "true".to_owned()),
        // R2.4 / R9: unitless integer seconds ("3600s" fails validation); between two
        // reads/writes, not the whole connection; the docs recommend >= 3600 for WebSockets.
        ("proxy-read-timeout", "3600".to_owned()),
        ("proxy-send-timeout", "3600".to_owned()),
        // R2.5: a pod that drains or sheds answers new sessions 503 until its
        // readiness probe takes it out of the endpoints (up to 10 s); nginx then
        // tries the handshake (a GET) on another pod instead of failing it.
        // POSTs are never retried (no `non_idempotent`): they carry a session id,
        // which the holding pod always serves.
        ("proxy-next-upstream", "error timeout http_503".to_owned()),
    ];
    // `session-cookie-secure` stays unset: ingress-nginx then adds `Secure` exactly
    // when the request reached it over HTTPS (R2.2).
    pairs
        .into_iter()
        .map(|(k, v)| (format!("{NGINX}{k}"), v))
        .collect()
}

/// jcmoraisjr/haproxy-ingress (docs/routing.md R5.1), Backend-scope keys set on
/// the Ingress. Not the HAProxy Technologies controller (R5.2), whose keys
/// (`haproxy.org/...`) differ and whose `timeout-tunnel` is ConfigMap-only.
fn haproxy_ingress_annotations(cc: &ChatCluster) -> BTreeMap<String, String> {
    let pairs = [
        // R5.1: `cookie` is the only option.
        ("affinity", "cookie".to_owned()),
        // R5.1: string, default `INGRESSCOOKIE`.
        ("session-cookie-name", cc.spec.routing.cookie_name.clone()),
        // R5.1: `insert` (HAProxy adds the cookie; default keywords then
        // `indirect nocache httponly`).
        ("session-cookie-strategy", "insert".to_owned()),
        // R5.1: Backend scope, inactivity timeout of tunnels (WebSocket after the
        // upgrade); always with a unit, bare numbers are milliseconds (R9). 1h matches
        // the ingress-nginx timeouts.
        ("timeout-tunnel", "1h".to_owned()),
    ];
    // Not emitted: `session-cookie-same-site` is a boolean that forces
    // `SameSite=None; Secure` (R5.1, R9), unwanted for a same-site page; a cookie
    // lifetime via `session-cookie-keywords` is unverified (R5.1, R10 item 5).
    pairs
        .into_iter()
        .map(|(k, v)| (format!("{HAPROXY}{k}"), v))
        .collect()
}

/// The HTTPRoute: attached to the spec's Gateways, one rule for `/` to the
/// chat Service, with cookie session persistence.
///
/// Requirements (docs/routing.md R6.1): `sessionPersistence` exists only in the
/// Gateway API **experimental** channel CRDs (since v1.1.0); on standard-channel
/// CRDs the field is not in the schema. Implementations that honour it
/// (R6.3): Envoy Gateway since v1.2.0; NGINX Gateway Fabric with NGINX Plus
/// only; Cilium from the release containing PR #48029; Traefik's Gateway
/// provider does not (R4.5). Istio, kgateway and others are unverified.
///
/// TLS: an HTTPRoute carries no certificate; TLS terminates on the Gateway
/// listener (`certificateRefs`), so `routing.tlsSecretName` is not used here.
fn http_route(cc: &ChatCluster, gateway: &GatewayRouting) -> HTTPRoute {
    let routing = &cc.spec.routing;
    let parent_refs = gateway
        .parent_refs
        .iter()
        .map(|parent| ParentReference {
            group: Some("gateway.networking.k8s.io".into()),
            kind: Some("Gateway".into()),
            // Unset means the route's (the ChatCluster's) namespace. A Gateway in
            // another namespace must allow routes from this one (`allowedRoutes`).
            namespace: parent.namespace.clone(),
            name: parent.name.clone(),
            section_name: parent.section_name.clone(),
            port: None,
        })
        .collect();
    HTTPRoute {
        metadata: super::owned_meta(cc, cc.name_any(), names::CHAT),
        spec: HTTPRouteSpec {
            parent_refs,
            hostnames: vec![routing.host.clone()],
            rules: vec![HTTPRouteRule {
                name: None,
                matches: vec![HTTPRouteMatch {
                    path: Some(HTTPPathMatch {
                        type_: Some(PathMatchType::PathPrefix),
                        value: Some(ROOT_PATH.into()),
                    }),
                }],
                backend_refs: vec![HTTPBackendRef {
                    name: names::chat(cc),
                    port: Some(CLIENT_SERVICE_PORT),
                    ..Default::default()
                }],
                // R6.2 released shape (v1.1.0 – v1.6.1). R6.2 builder rules: `type: Cookie`
                // together with `cookieConfig.lifetimeType`; `Session` (browser-session
                // cookie) needs no `absoluteTimeout`; never `idleTimeout` (gone in v1.6.0).
                // Envoy Gateway sets the cookie Path to the rule's path match, `/` (R6.3).
                session_persistence: Some(SessionPersistence {
                    session_name: Some(routing.cookie_name.clone()),
                    absolute_timeout: None,
                    type_: Some(SessionPersistenceType::Cookie),
                    cookie_config: Some(CookieConfig {
                        lifetime_type: Some(CookieLifetimeType::Session),
                    }),
                }),
            }],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::{MINIMAL, cluster};
    use serde_json::{Value, json};

    /// A ChatCluster whose `spec.routing` is `routing` (YAML flow mapping body).
    fn with_routing(routing: &str) -> ChatCluster {
        cluster(&MINIMAL.replace(
            "{host: chat.example.com}",
            &format!("{{host: chat.example.com, {routing}}}"),
        ))
    }

    fn only_object(cc: &ChatCluster) -> DynamicObject {
        let mut objects = objects(cc).expect("buildable");
        assert_eq!(objects.len(), 1, "exactly one routing object");
        objects.remove(0)
    }

    fn typed_ingress(cc: &ChatCluster) -> Ingress {
        let object = only_object(cc);
        let types = object.types.clone().expect("type meta");
        assert_eq!(types.api_version, "networking.k8s.io/v1");
        assert_eq!(types.kind, "Ingress");
        serde_json::from_value(serde_json::to_value(&object).unwrap())
            .expect("the DynamicObject is a valid k8s-openapi Ingress")
    }

    fn annotations_of(ingress: &Ingress) -> BTreeMap<String, String> {
        ingress.metadata.annotations.clone().unwrap_or_default()
    }

    fn assert_owned(metadata: &kube::api::ObjectMeta) {
        assert_eq!(metadata.name.as_deref(), Some("team"));
        assert_eq!(metadata.namespace.as_deref(), Some("apps"));
        let owners = metadata.owner_references.as_ref().expect("owner reference");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "ChatCluster");
        assert_eq!(owners[0].name, "team");
        assert_eq!(owners[0].uid, "1234");
        assert_eq!(owners[0].controller, Some(true));
        let labels = metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/component"], names::CHAT);
    }

    /// Host, `/` Prefix, backend Service `team-chat` port 80.
    fn assert_single_rule_to_chat_service(ingress: &Ingress) {
        let rules = ingress.spec.as_ref().unwrap().rules.as_ref().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].host.as_deref(), Some("chat.example.com"));
        let paths = &rules[0].http.as_ref().unwrap().paths;
        assert_eq!(paths.len(), 1);
        assert_eq!(paths[0].path.as_deref(), Some("/"));
        assert_eq!(paths[0].path_type, "Prefix");
        let service = paths[0].backend.service.as_ref().unwrap();
        assert_eq!(service.name, "team-chat");
        assert_eq!(service.port.as_ref().unwrap().number, Some(80));
    }

    fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn minimal_spec_is_an_ingress_nginx_ingress() {
        let cc = cluster(MINIMAL);
        let ingress = typed_ingress(&cc);
        assert_owned(&ingress.metadata);
        assert_single_rule_to_chat_service(&ingress);
        let spec = ingress.spec.as_ref().unwrap();
        assert_eq!(spec.ingress_class_name, None, "cluster default class");
        assert_eq!(spec.tls, None, "plain HTTP without a TLS secret");
        assert_eq!(
            annotations_of(&ingress),
            strings(&[
                ("nginx.ingress.kubernetes.io/affinity", "cookie"),
                ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
                (
                    "nginx.ingress.kubernetes.io/session-cookie-name",
                    "chatscale-affinity"
                ),
                ("nginx.ingress.kubernetes.io/session-cookie-path", "/"),
                ("nginx.ingress.kubernetes.io/session-cookie-samesite", "Lax"),
                (
                    "nginx.ingress.kubernetes.io/session-cookie-max-age",
                    "86400"
                ),
                (
                    "nginx.ingress.kubernetes.io/session-cookie-change-on-failure",
                    "true"
                ),
                ("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600"),
                ("nginx.ingress.kubernetes.io/proxy-send-timeout", "3600"),
                (
                    "nginx.ingress.kubernetes.io/proxy-next-upstream",
                    "error timeout http_503"
                ),
            ])
        );
        assert!(service_annotations(&cc).is_empty());
    }

    #[test]
    fn ingress_nginx_with_class_tls_and_cookie_name() {
        let cc = with_routing(
            "tlsSecretName: chat-tls, cookieName: SID, ingress: {flavor: ingress-nginx, className: nginx}",
        );
        let ingress = typed_ingress(&cc);
        assert_owned(&ingress.metadata);
        assert_single_rule_to_chat_service(&ingress);
        let spec = ingress.spec.as_ref().unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("nginx"));
        let tls = spec.tls.as_ref().unwrap();
        assert_eq!(tls.len(), 1);
        assert_eq!(tls[0].hosts, Some(vec!["chat.example.com".to_owned()]));
        assert_eq!(tls[0].secret_name.as_deref(), Some("chat-tls"));
        let annotations = annotations_of(&ingress);
        assert_eq!(
            annotations["nginx.ingress.kubernetes.io/session-cookie-name"],
            "SID"
        );
        // Timeouts are digits only (docs/routing.md R2.4).
        for key in ["proxy-read-timeout", "proxy-send-timeout"] {
            let value = &annotations[&format!("nginx.ingress.kubernetes.io/{key}")];
            assert!(value.chars().all(|c| c.is_ascii_digit()), "{key}: {value}");
        }
        assert!(!annotations.contains_key("nginx.ingress.kubernetes.io/service-upstream"));
        assert!(service_annotations(&cc).is_empty());
    }

    #[test]
    fn traefik_puts_the_sticky_cookie_on_the_service() {
        let cc = with_routing("cookieName: SID, ingress: {flavor: traefik, className: traefik}");
        let ingress = typed_ingress(&cc);
        assert_owned(&ingress.metadata);
        assert_single_rule_to_chat_service(&ingress);
        assert_eq!(
            ingress.spec.as_ref().unwrap().ingress_class_name.as_deref(),
            Some("traefik")
        );
        assert!(
            annotations_of(&ingress).is_empty(),
            "no nginx (or other) keys on the Ingress"
        );
        assert_eq!(
            service_annotations(&cc),
            strings(&[
                (
                    "traefik.ingress.kubernetes.io/service.sticky.cookie",
                    "true"
                ),
                (
                    "traefik.ingress.kubernetes.io/service.sticky.cookie.name",
                    "SID"
                ),
                (
                    "traefik.ingress.kubernetes.io/service.sticky.cookie.httponly",
                    "true"
                ),
                (
                    "traefik.ingress.kubernetes.io/service.sticky.cookie.samesite",
                    "lax"
                ),
            ])
        );
    }

    #[test]
    fn traefik_with_tls_marks_the_cookie_secure_and_stays_v2_compatible() {
        let cc = with_routing("tlsSecretName: chat-tls, ingress: {flavor: traefik}");
        let ingress = typed_ingress(&cc);
        let spec = ingress.spec.as_ref().unwrap();
        assert_eq!(spec.ingress_class_name, None);
        assert_eq!(
            spec.tls.as_ref().unwrap()[0].secret_name.as_deref(),
            Some("chat-tls")
        );
        let annotations = service_annotations(&cc);
        assert_eq!(
            annotations["traefik.ingress.kubernetes.io/service.sticky.cookie.secure"],
            "true"
        );
        // v3-only keys (docs/routing.md R4.1) are not emitted.
        for key in ["maxage", "path", "domain"] {
            assert!(
                !annotations.contains_key(&format!("{TRAEFIK}.{key}")),
                "{key}"
            );
        }
    }

    #[test]
    fn haproxy_ingress_uses_jcmoraisjr_backend_keys() {
        let cc = with_routing("ingress: {flavor: haproxy, className: haproxy}");
        let ingress = typed_ingress(&cc);
        assert_owned(&ingress.metadata);
        assert_single_rule_to_chat_service(&ingress);
        assert_eq!(
            ingress.spec.as_ref().unwrap().ingress_class_name.as_deref(),
            Some("haproxy")
        );
        assert_eq!(
            annotations_of(&ingress),
            strings(&[
                ("haproxy-ingress.github.io/affinity", "cookie"),
                (
                    "haproxy-ingress.github.io/session-cookie-name",
                    "chatscale-affinity"
                ),
                (
                    "haproxy-ingress.github.io/session-cookie-strategy",
                    "insert"
                ),
                ("haproxy-ingress.github.io/timeout-tunnel", "1h"),
            ])
        );
        assert!(service_annotations(&cc).is_empty());
    }

    #[test]
    fn gateway_is_an_httproute_with_session_persistence() {
        let cc = with_routing(
            "tlsSecretName: ignored-here, cookieName: SID, gateway: {parentRefs: [{name: public, namespace: infra, sectionName: https}, {name: internal}]}",
        );
        let object = only_object(&cc);
        let types = object.types.clone().expect("type meta");
        assert_eq!(types.api_version, "gateway.networking.k8s.io/v1");
        assert_eq!(types.kind, "HTTPRoute");
        assert_owned(&object.metadata);
        assert_eq!(
            object.data["spec"],
            json!({
                "parentRefs": [
                    {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                     "name": "public", "namespace": "infra", "sectionName": "https"},
                    {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "internal"}
                ],
                "hostnames": ["chat.example.com"],
                "rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": "team-chat", "port": 80}],
                    "sessionPersistence": {
                        "sessionName": "SID",
                        "type": "Cookie",
                        "cookieConfig": {"lifetimeType": "Session"}
                    }
                }]
            })
        );
        // Never the field removed in Gateway API v1.6.0 (docs/routing.md R6.1).
        assert_eq!(
            object.data["spec"]["rules"][0]["sessionPersistence"]["idleTimeout"],
            Value::Null
        );
        // It reads back as the typed HTTPRoute.
        let route: HTTPRoute =
            serde_json::from_value(serde_json::to_value(&object).unwrap()).unwrap();
        assert_eq!(route.spec.rules[0].backend_refs[0].name, "team-chat");
        assert!(service_annotations(&cc).is_empty());
    }

    #[test]
    fn gateway_wins_over_a_traefik_flavor_for_service_annotations() {
        // The CRD's CEL rule forbids both; the builders still agree on Gateway API.
        let cc = with_routing("ingress: {flavor: traefik}, gateway: {parentRefs: [{name: gw}]}");
        assert_eq!(only_object(&cc).types.unwrap().kind, "HTTPRoute");
        assert!(service_annotations(&cc).is_empty());
    }

    #[test]
    fn cookie_names_every_controller_accepts() {
        for bad in ["", "a b", "a;b", "a/b", "a:b", "é", &"x".repeat(129)] {
            let mut cc = cluster(MINIMAL);
            cc.spec.routing.cookie_name = bad.to_owned();
            assert!(objects(&cc).is_err(), "{bad:?} must be rejected");
        }
        for good in ["chatscale-affinity", "SID", "a.b_c~d-1", &"x".repeat(128)] {
            let mut cc = cluster(MINIMAL);
            cc.spec.routing.cookie_name = good.to_owned();
            assert!(objects(&cc).is_ok(), "{good:?} must be accepted");
        }
    }
}
