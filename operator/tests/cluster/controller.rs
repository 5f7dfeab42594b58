//! The controller against the real API server: every object with an owner
//! reference; server-side apply under one field manager (it owns what it
//! sets, leaves other managers' fields alone and removes what it stops
//! setting); drift correction; status through `/status` with conditions and
//! `observedGeneration`; Events; pods on kwok nodes Running and Ready with
//! the status following; deletion through the real garbage collector;
//! generated secrets nowhere but in their Secrets; the Gateway path's
//! HTTPRoute accepted by the real Gateway API CRD.

use chatscale_operator::{
    api::ChatCluster,
    controller::{FIELD_MANAGER, Reason},
};
use k8s_openapi::{
    ByteString,
    api::{
        apps::v1::{Deployment, StatefulSet},
        core::v1::{ConfigMap, Event, Pod, Secret, Service},
        networking::v1::{Ingress, NetworkPolicy},
        policy::v1::PodDisruptionBudget,
    },
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams},
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::support::{Installed, event_reasons, eventually, example, install_crds, installed};

/// The condition `type_` of a ChatCluster as (status, reason).
async fn condition(client: &Client, ns: &str, name: &str, type_: &str) -> Option<(String, String)> {
    let cc = Api::<ChatCluster>::namespaced(client.clone(), ns)
        .get(name)
        .await
        .ok()?;
    let found = cc
        .status?
        .conditions
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((found.status, found.reason))
}

async fn get<K>(client: &Client, ns: &str, name: &str) -> Option<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

/// Every object the minimal example gets, as (kind, name, owner uid).
async fn owned(client: &Client, ns: &str) -> Vec<(&'static str, &'static str, Option<String>)> {
    fn owner<K: Resource>(object: Option<K>) -> Option<String> {
        let object = object?;
        let reference = object.meta().owner_references.as_ref()?.first()?.clone();
        (reference.controller == Some(true)).then_some(reference.uid)
    }
    vec![
        (
            "Secret",
            "team-chat-redis-auth",
            owner(get::<Secret>(client, ns, "team-chat-redis-auth").await),
        ),
        (
            "Service",
            "team-chat-redis",
            owner(get::<Service>(client, ns, "team-chat-redis").await),
        ),
        (
            "StatefulSet",
            "team-chat-redis",
            owner(get::<StatefulSet>(client, ns, "team-chat-redis").await),
        ),
        (
            "Secret",
            "team-chat-admin",
            owner(get::<Secret>(client, ns, "team-chat-admin").await),
        ),
        (
            "Deployment",
            "team-chat-chat",
            owner(get::<Deployment>(client, ns, "team-chat-chat").await),
        ),
        (
            "Service",
            "team-chat-chat",
            owner(get::<Service>(client, ns, "team-chat-chat").await),
        ),
        (
            "Ingress",
            "team-chat",
            owner(get::<Ingress>(client, ns, "team-chat").await),
        ),
        (
            "PodDisruptionBudget",
            "team-chat-chat",
            owner(get::<PodDisruptionBudget>(client, ns, "team-chat-chat").await),
        ),
        (
            "NetworkPolicy",
            "team-chat-redis",
            owner(get::<NetworkPolicy>(client, ns, "team-chat-redis").await),
        ),
        (
            "NetworkPolicy",
            "team-chat-chat",
            owner(get::<NetworkPolicy>(client, ns, "team-chat-chat").await),
        ),
    ]
}

fn env_value(deployment: &Deployment, name: &str) -> Option<String> {
    deployment.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.value.clone().unwrap_or_default())
}

fn secret_value(secret: &Secret, key: &str) -> String {
    let ByteString(bytes) = &secret.data.as_ref().unwrap()[key];
    String::from_utf8(bytes.clone()).unwrap()
}

/// Pods of `component` (chat or redis) that are Running and Ready on a kwok node.
async fn ready_pods(client: &Client, ns: &str, component: &str) -> usize {
    let selector =
        format!("app.kubernetes.io/instance=team-chat,app.kubernetes.io/component={component}");
    let Ok(pods) = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&kube::api::ListParams::default().labels(&selector))
        .await
    else {
        return 0;
    };
    pods.items
        .iter()
        .filter(|pod| {
            let on_kwok = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| n.starts_with("kwok-node-"));
            let status = pod.status.clone().unwrap_or_default();
            let ready = status
                .conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            on_kwok && ready && status.phase.as_deref() == Some("Running")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_builds_keeps_and_reports_a_chat_cluster() -> anyhow::Result<()> {
    let Installed {
        namespace: ns,
        operator,
        client,
    } = installed("controller").await?;
    let ns = ns.as_str();
    // A user's JWT key, which must stay in its Secret too.
    let jwt_key = "user-jwt-secret-0123456789abcdef-0123456789";
    Api::<Secret>::namespaced(client.clone(), ns)
        .create(
            &Default::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "chat-jwt"},
                "stringData": {"hs256": jwt_key},
            }))?,
        )
        .await?;
    let mut minimal = example("minimal", ns)?;
    minimal["spec"]["auth"] =
        json!({"jwtSecretRef": {"name": "chat-jwt", "key": "hs256"}, "audience": "chat"});
    let clusters: Api<ChatCluster> = Api::namespaced(client.clone(), ns);
    let created = clusters
        .create(&Default::default(), &serde_json::from_value(minimal)?)
        .await?;
    let uid = created.uid().unwrap();

    // Every object, owned by the ChatCluster (controller: true).
    let objects = eventually("every object of the minimal example", || async {
        let objects = owned(&client, ns).await;
        objects
            .iter()
            .all(|(_, _, o)| o.is_some())
            .then_some(objects)
    })
    .await?;
    for (kind, name, owner) in &objects {
        assert_eq!(owner.as_deref(), Some(uid.as_str()), "{kind} {name}");
    }

    // Server-side apply: the operator's manager owns the fields it sets.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let deployment = deployments.get("team-chat-chat").await?;
    let entry = deployment
        .managed_fields()
        .iter()
        .find(|m| m.manager.as_deref() == Some(FIELD_MANAGER))
        .expect("a managedFields entry of the operator");
    assert_eq!(entry.operation.as_deref(), Some("Apply"));
    let fields = serde_json::to_value(&entry.fields_v1)?;
    assert!(
        fields.pointer("/f:spec/f:replicas").is_some()
            && fields
                .pointer("/f:spec/f:template/f:spec/f:containers")
                .is_some(),
        "the operator owns spec.replicas and the containers: {fields}"
    );

    // Status through /status: conditions and observedGeneration; an Event.
    eventually("Degraded=False/Reconciled", || async {
        (condition(&client, ns, "team-chat", "Degraded").await
            == Some(("False".into(), "Reconciled".into())))
        .then_some(())
    })
    .await?;
    let status = clusters.get_status("team-chat").await?.status.unwrap();
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.selector.as_deref(),
        Some(
            "app.kubernetes.io/component=chat,app.kubernetes.io/instance=team-chat,app.kubernetes.io/name=chatscale"
        )
    );
    assert!(
        event_reasons(&client, ns, "team-chat")
            .await
            .contains(&Reason::Created.to_string()),
        "a Created Event"
    );

    // kwok runs the pods: both chat replicas and Redis are Running and Ready on
    // fake nodes, and the ChatCluster's status follows the Deployment.
    eventually("2 chat pods and 1 Redis pod Ready", || async {
        (ready_pods(&client, ns, "chat").await == 2 && ready_pods(&client, ns, "redis").await == 1)
            .then_some(())
    })
    .await?;
    eventually("Ready=True/PodsReady with 2 ready replicas", || async {
        let ready = condition(&client, ns, "team-chat", "Ready").await
            == Some(("True".into(), "PodsReady".into()));
        let status = clusters.get_status("team-chat").await.ok()?.status?;
        (ready && status.replicas == 2 && status.ready_replicas == 2).then_some(())
    })
    .await?;

    // Generated secrets stay in their Secrets.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    let password = secret_value(&secrets.get("team-chat-redis-auth").await?, "password");
    let token = secret_value(&secrets.get("team-chat-admin").await?, "token");
    assert_eq!(password.len(), 40);

    // A field another manager sets is left alone; a spec change flows through;
    // the generated password stays; a field the operator stops setting goes.
    deployments
        .patch(
            "team-chat-chat",
            &PatchParams::apply("someone-else"),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "team-chat-chat", "annotations": {"example.com/owner": "team-a"}},
            })),
        )
        .await?;
    clusters
        .patch(
            "team-chat",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"limits": {"maxRoomsPerSocket": 7}}})),
        )
        .await?;
    let changed = eventually("CHAT_MAX_ROOMS_PER_SOCKET=7 on the Deployment", || async {
        let d = deployments.get("team-chat-chat").await.ok()?;
        (env_value(&d, "CHAT_MAX_ROOMS_PER_SOCKET").as_deref() == Some("7")).then_some(d)
    })
    .await?;
    assert_eq!(
        changed
            .annotations()
            .get("example.com/owner")
            .map(String::as_str),
        Some("team-a"),
        "another manager's annotation survives the operator's apply"
    );
    clusters
        .patch(
            "team-chat",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"limits": {"maxRoomsPerSocket": null}}})),
        )
        .await?;
    eventually(
        "CHAT_MAX_ROOMS_PER_SOCKET removed once the spec drops it",
        || async {
            let d = deployments.get("team-chat-chat").await.ok()?;
            env_value(&d, "CHAT_MAX_ROOMS_PER_SOCKET")
                .is_none()
                .then_some(())
        },
    )
    .await?;
    eventually("observedGeneration 3", || async {
        let status = clusters.get_status("team-chat").await.ok()?.status?;
        (status.observed_generation == Some(3)).then_some(())
    })
    .await?;
    assert_eq!(
        secret_value(&secrets.get("team-chat-redis-auth").await?, "password"),
        password,
        "the password is generated once"
    );

    // Drift: a deleted Deployment and an edited Service come back.
    let old_uid = deployments.get("team-chat-chat").await?.uid();
    deployments
        .delete("team-chat-chat", &DeleteParams::default())
        .await?;
    eventually("a new Deployment", || async {
        let d = deployments.get_opt("team-chat-chat").await.ok()??;
        (d.uid() != old_uid && d.metadata.deletion_timestamp.is_none()).then_some(())
    })
    .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    services
        .patch(
            "team-chat-chat",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"selector": {"app.kubernetes.io/component": "elsewhere"}}}),
            ),
        )
        .await?;
    eventually("the Service's selector restored", || async {
        let s = services.get("team-chat-chat").await.ok()?;
        (s.spec?.selector?.get("app.kubernetes.io/component")? == "chat").then_some(())
    })
    .await?;

    // A spec only the operator can refuse (trustedProxies is checked by the
    // operator, not CEL): Degraded, a Warning Event, the operator keeps running.
    clusters
        .patch(
            "team-chat",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"limits": {"trustedProxies": ["not-an-address"]}}})),
        )
        .await?;
    eventually("Degraded=True/InvalidSpec", || async {
        (condition(&client, ns, "team-chat", "Degraded").await
            == Some(("True".into(), "InvalidSpec".into())))
        .then_some(())
    })
    .await?;
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let warnings = events.list(&Default::default()).await?;
    assert!(
        warnings.items.iter().any(
            |e| e.reason.as_deref() == Some(Reason::InvalidSpec.as_str())
                && e.type_.as_deref() == Some("Warning")
        ),
        "a Warning Event explains it"
    );

    // Nothing but their Secrets holds the generated password and token or the JWT key:
    // not the status, Events, other objects, nor the operator's debug logs.
    let mut written = serde_json::to_string(&clusters.get("team-chat").await?)?;
    written += &serde_json::to_string(&events.list(&Default::default()).await?)?;
    written += &serde_json::to_string(&deployments.list(&Default::default()).await?)?;
    written += &serde_json::to_string(&services.list(&Default::default()).await?)?;
    written += &serde_json::to_string(
        &Api::<StatefulSet>::namespaced(client.clone(), ns)
            .list(&Default::default())
            .await?,
    )?;
    written += &serde_json::to_string(
        &Api::<ConfigMap>::namespaced(client.clone(), ns)
            .list(&Default::default())
            .await?,
    )?;
    written += &operator.logs();
    let jwt_key = jwt_key.to_owned();
    for (what, value) in [
        ("the Redis password", &password),
        ("the admin token", &token),
        ("the user's JWT key", &jwt_key),
    ] {
        assert!(!written.contains(value.as_str()), "{what} leaked");
    }

    // Deleting the ChatCluster removes its children through the real garbage collector.
    clusters
        .delete("team-chat", &DeleteParams::default())
        .await?;
    eventually("every owned object gone", || async {
        owned(&client, ns)
            .await
            .iter()
            .all(|(_, _, o)| o.is_none())
            .then_some(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_cluster_gets_an_httproute_the_gateway_api_crd_accepts() -> anyhow::Result<()> {
    // The operator checks at start-up whether HTTPRoutes are served.
    install_crds("gateway.networking.k8s.io_")?;
    let Installed {
        namespace: ns,
        operator: _operator,
        client,
    } = installed("gateway").await?;
    let ns = ns.as_str();
    crate::support::production_secrets(&client, ns).await?;
    Api::<ChatCluster>::namespaced(client.clone(), ns)
        .create(
            &Default::default(),
            &serde_json::from_value(example("production", ns)?)?,
        )
        .await?;
    let gvk = GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute");
    let routes: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "httproutes"),
    );
    let route = eventually("the HTTPRoute", || async {
        routes.get_opt("agency").await.ok()?
    })
    .await?;
    // The API server prunes fields its schema does not know: this one knows
    // sessionPersistence (the experimental channel).
    assert_eq!(
        route.data["spec"]["rules"][0]["sessionPersistence"]["sessionName"],
        "agency-chat"
    );
    assert_eq!(
        route.data["spec"]["rules"][0]["sessionPersistence"]["type"],
        "Cookie"
    );

    // Watched: deleted or edited, it comes back at once (not at the periodic resync).
    let old = route.uid();
    routes.delete("agency", &DeleteParams::default()).await?;
    eventually("a new HTTPRoute", || async {
        let r = routes.get_opt("agency").await.ok()??;
        (r.uid() != old).then_some(())
    })
    .await?;
    routes
        .patch(
            "agency",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"hostnames": ["elsewhere.example"]}})),
        )
        .await?;
    eventually("the hostname restored", || async {
        let r = routes.get("agency").await.ok()?;
        (r.data["spec"]["hostnames"][0] == "chat.agency.example").then_some(())
    })
    .await?;
    assert!(
        get::<Ingress>(&client, ns, "agency").await.is_none(),
        "no Ingress"
    );
    assert!(
        get::<StatefulSet>(&client, ns, "agency-redis")
            .await
            .is_none(),
        "external Redis: none managed"
    );
    Ok(())
}
