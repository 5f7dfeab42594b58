//! An in-memory fake Kubernetes API server for controller tests.
//!
//! There is no cluster, envtest or kube-apiserver on the machines these tests run on, so the
//! operator is tested against this instead. It serves real HTTP on 127.0.0.1, so an ordinary
//! [`kube::Client`] and the real `kube_runtime` watcher and `Controller` (LIST, then WATCH from
//! the list's resourceVersion, re-WATCH when a stream ends) work unchanged. The store is
//! schemaless: any group, version and plural is accepted, so CRDs such as
//! `chatclusters.chatscale.dev` or Gateway API `httproutes` need no registration.
//!
//! What it emulates:
//! - GET, LIST (with equality `labelSelector`s like `a=b,c!=d,e,!f` and field selectors on
//!   dotted string paths such as `metadata.name=x`), WATCH (`watch=true`; resumes from a
//!   `resourceVersion` using a history that is never truncated; without one, or with `0`,
//!   starts with every current object as ADDED; ends once `timeoutSeconds` have passed and
//!   nothing is left to send), POST (`generateName` gets a counter suffix), PUT, PATCH and
//!   DELETE (answers with the object), on namespaced and cluster-scoped paths under `/api/v1`
//!   and `/apis/{group}/{version}`, including `/status`. A LIST's kind is `<Kind>List` from its
//!   items, or `List` when empty. Errors are `Status` objects (NotFound, AlreadyExists, ...).
//! - One global resourceVersion, bumped on every write that changes something (no-op writes
//!   change nothing and send no watch event); `uid`, `creationTimestamp` and
//!   `generation: 1` set on create; `generation` bumped when `.spec` changes.
//! - Every resource is treated as having a status subresource: writes to the main resource keep
//!   the stored `.status` (and ignore `.status` on create), writes to `/status` change only
//!   `.status`.
//! - Optimistic concurrency: a PUT or PATCH whose body carries a `metadata.resourceVersion`
//!   other than the stored one fails with 409 Conflict.
//! - PATCH: `application/merge-patch+json` is RFC 7386; `application/strategic-merge-patch+json`
//!   is treated the same; `application/apply-patch+yaml` (server-side apply; the body must be
//!   JSON, as kube sends it) creates the object if absent, else is merged the same way.
//! - DELETE of an object with `metadata.finalizers` only sets `deletionTimestamp`; the object
//!   goes once a write leaves no finalizers. When an object goes, every object with an
//!   ownerReference `controller: true` to its uid is deleted too, recursively and at once (a
//!   stand-in for the garbage collector; other ownerReferences are ignored).
//!
//! What it does NOT do: no admission or validation, no defaulting, no managed fields or
//! field-manager conflict detection (`fieldManager`, `force` and `dryRun` are ignored, and apply
//! never removes fields a manager stopped setting), no RBAC or authentication, no discovery
//! (`/api`, `/apis`, `/version`), no pagination (`limit` is ignored: one page), no set-based
//! selectors (`in`, `notin`), no JSON Patch (RFC 6902), no delete-collection, no watch
//! bookmarks or streaming lists (`sendInitialEvents`), no 410 Gone, no conversion between
//! versions (each version is stored separately), no namespace lifecycle, and watches with a
//! label selector do not turn "stopped matching" into DELETED.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Query, State},
    http::{HeaderMap, Method, StatusCode, Uri, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::{Resource, core::ApiResource};
use serde_json::{Value, json};
use tokio::{sync::watch, task::JoinHandle, time::Instant};

/// A running fake API server; stops accepting connections when dropped.
pub struct FakeKube {
    shared: Arc<Shared>,
    url: String,
    server: JoinHandle<()>,
}

/// The [`ApiResource`] of a typed resource, for [`FakeKube`]'s direct accessors.
pub fn res<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

impl FakeKube {
    /// Starts serving on a free loopback port.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let shared = Arc::new(Shared {
            store: Mutex::default(),
            changed: watch::channel(0).0,
        });
        let app = Router::new().fallback(serve).with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            shared,
            url,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A client for this server, with default namespace "default".
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("a valid URL"));
        kube::Client::try_from(config).expect("building a kube client")
    }

    /// The stored object; `namespace` is "" for cluster-scoped objects.
    pub fn get(&self, resource: &ApiResource, namespace: &str, name: &str) -> Option<Value> {
        let key = Key::of(resource, namespace, name);
        self.shared.read(|s| s.objects.get(&key).cloned())
    }

    /// The stored object, typed.
    pub fn get_as<K>(&self, namespace: &str, name: &str) -> Option<K>
    where
        K: Resource<DynamicType = ()> + DeserializeOwned,
    {
        let object = self.get(&res::<K>(), namespace, name)?;
        Some(serde_json::from_value(object).expect("the stored object has the type's shape"))
    }

    /// Every stored object (each has `apiVersion` and `kind`), ordered by group, version,
    /// plural, namespace and name.
    pub fn objects(&self) -> Vec<Value> {
        self.shared.read(|s| s.objects.values().cloned().collect())
    }

    /// Deletes as a user would (finalizers and the controller-owner cascade apply), emitting
    /// watch events; returns what DELETE would, or None if absent.
    pub fn delete_direct(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
    ) -> Option<Value> {
        let key = Key::of(resource, namespace, name);
        self.shared.write(|s| s.delete(&key))
    }

    /// Edits the whole stored object, status included, as another controller or a user would;
    /// bumps resourceVersion (and generation if `.spec` changed) and emits MODIFIED.
    /// Returns the stored result, or None if absent.
    pub fn edit_direct(
        &self,
        resource: &ApiResource,
        namespace: &str,
        name: &str,
        edit: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let key = Key::of(resource, namespace, name);
        self.shared.write(|s| {
            let mut object = s.objects.get(&key)?.clone();
            edit(&mut object);
            Some(s.update(&key, object, Write::Direct))
        })
    }

    /// Waits until `check` holds; it is checked now and again after every store write.
    pub async fn wait_for(
        &self,
        check: impl Fn(&Self) -> bool,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let mut changed = self.shared.changed.subscribe();
        tokio::time::timeout(timeout, async {
            while !check(self) {
                changed
                    .changed()
                    .await
                    .expect("the sender lives as long as self");
            }
        })
        .await
        .with_context(|| format!("condition not met within {timeout:?}"))
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The store, and a channel that ticks (with the latest resourceVersion) after every write.
struct Shared {
    store: Mutex<Store>,
    changed: watch::Sender<u64>,
}

impl Shared {
    fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(&self.store.lock().unwrap())
    }

    fn write<R>(&self, f: impl FnOnce(&mut Store) -> R) -> R {
        let mut store = self.store.lock().unwrap();
        let out = f(&mut store);
        let rv = store.rv;
        self.changed
            .send_if_modified(|seen| std::mem::replace(seen, rv) != rv);
        out
    }
}

/// Where an object lives; `namespace` is empty for cluster-scoped objects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    group: String,
    version: String,
    plural: String,
    namespace: String,
    name: String,
}

impl Key {
    fn of(resource: &ApiResource, namespace: &str, name: &str) -> Self {
        Self {
            group: resource.group.clone(),
            version: resource.version.clone(),
            plural: resource.plural.clone(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// A watch event as it happened; `object` is the state after it (the last state for DELETED).
struct Event {
    rv: u64,
    key: Key,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
struct Store {
    /// The latest resourceVersion; every one has an [`Event`] in `history`.
    rv: u64,
    /// Feeds uids and generated names.
    serial: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Event>,
}

/// Which parts of the stored object a write may change.
#[derive(Clone, Copy)]
enum Write {
    /// The main resource: all but `.status` and system metadata.
    Main,
    /// The `/status` subresource: only `.status`.
    Status,
    /// A test's direct edit: everything.
    Direct,
}

impl Store {
    /// Stamps a new resourceVersion on `object`, stores (or, for DELETED, removes) it, and
    /// records the watch event.
    fn record(&mut self, key: &Key, mut object: Value, kind: &'static str) -> Value {
        self.rv += 1;
        object["metadata"]["resourceVersion"] = self.rv.to_string().into();
        if kind == "DELETED" {
            self.objects.remove(key);
        } else {
            self.objects.insert(key.clone(), object.clone());
        }
        self.history.push(Event {
            rv: self.rv,
            key: key.clone(),
            kind,
            object: object.clone(),
        });
        object
    }

    /// Creates `object`; an empty `key.name` is taken from `metadata.name` or `generateName`.
    fn create(&mut self, mut key: Key, mut object: Value) -> Result<Value, Failure> {
        if key.name.is_empty() {
            key.name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .into();
        }
        if key.name.is_empty() {
            let Some(prefix) = object["metadata"]["generateName"].as_str() else {
                return Err(Failure::new(
                    422,
                    "Invalid",
                    "name or generateName is required",
                ));
            };
            key.name = format!("{prefix}{:05x}", self.serial + 1);
        }
        if self.objects.contains_key(&key) {
            let message = format!("{} \"{}\" already exists", key.plural, key.name);
            return Err(Failure::new(409, "AlreadyExists", message));
        }
        self.serial += 1;
        let meta = &mut object["metadata"];
        meta["name"] = key.name.clone().into();
        if key.namespace.is_empty() {
            remove(meta, "namespace");
        } else {
            meta["namespace"] = key.namespace.clone().into();
        }
        meta["uid"] = format!("00000000-0000-4000-8000-{:012x}", self.serial).into();
        meta["creationTimestamp"] = now().into();
        meta["generation"] = 1.into();
        remove(meta, "deletionTimestamp");
        remove(&mut object, "status");
        if object["apiVersion"].is_null() {
            object["apiVersion"] = api_version(&key.group, &key.version).into();
        }
        Ok(self.record(&key, object, "ADDED"))
    }

    /// Replaces the stored object at `key` (which must exist) with `proposed`, within what
    /// `how` may change.
    fn update(&mut self, key: &Key, proposed: Value, how: Write) -> Value {
        let old = self.objects[key].clone();
        let mut new = match how {
            Write::Direct => proposed,
            Write::Status => {
                let mut new = old.clone();
                copy(&mut new, &proposed, "status");
                new
            }
            Write::Main => {
                let mut new = proposed;
                for field in ["apiVersion", "kind", "status"] {
                    copy(&mut new, &old, field);
                }
                for field in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                ] {
                    copy(&mut new["metadata"], &old["metadata"], field);
                }
                new
            }
        };
        let generation = old["metadata"]["generation"].as_u64().unwrap_or(1);
        new["metadata"]["generation"] = (generation + u64::from(new["spec"] != old["spec"])).into();
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        if new == old {
            return old;
        }
        let new = self.record(key, new, "MODIFIED");
        if !new["metadata"]["deletionTimestamp"].is_null() && no_finalizers(&new) {
            return self.delete(key).unwrap_or(new);
        }
        new
    }

    /// Handles PATCH of the object at `key`.
    fn patch(
        &mut self,
        key: &Key,
        content_type: &str,
        patch: Value,
        how: Write,
    ) -> Result<Value, Failure> {
        let apply = match content_type {
            "application/apply-patch+yaml" => true,
            "application/merge-patch+json" | "application/strategic-merge-patch+json" => false,
            other => {
                let message = format!("unsupported patch type {other:?}");
                return Err(Failure::new(415, "UnsupportedMediaType", message));
            }
        };
        let Some(old) = self.objects.get(key) else {
            return match how {
                Write::Main if apply => self.create(key.clone(), patch),
                _ => Err(not_found(key)),
            };
        };
        check_resource_version(old, &patch)?;
        let mut merged = old.clone();
        merge(&mut merged, &patch);
        Ok(self.update(key, merged, how))
    }

    /// Handles PUT of the object at `key`.
    fn replace(&mut self, key: &Key, object: Value, how: Write) -> Result<Value, Failure> {
        let old = self.objects.get(key).ok_or_else(|| not_found(key))?;
        check_resource_version(old, &object)?;
        Ok(self.update(key, object, how))
    }

    /// Deletes the object at `key`: with finalizers it is only marked (deletionTimestamp);
    /// otherwise it goes, and so, recursively, does every object it is the controller of.
    fn delete(&mut self, key: &Key) -> Option<Value> {
        let mut object = self.objects.get(key)?.clone();
        if !no_finalizers(&object) {
            if object["metadata"]["deletionTimestamp"].is_null() {
                object["metadata"]["deletionTimestamp"] = now().into();
                return Some(self.record(key, object, "MODIFIED"));
            }
            return Some(object);
        }
        let gone = self.record(key, object, "DELETED");
        let uid = &gone["metadata"]["uid"];
        let dependents: Vec<Key> = (self.objects.iter())
            .filter(|(_, o)| {
                let owners = o["metadata"]["ownerReferences"].as_array();
                owners
                    .into_iter()
                    .flatten()
                    .any(|r| r["controller"] == true && r["uid"] == *uid)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for dependent in dependents {
            self.delete(&dependent);
        }
        Some(gone)
    }

    fn list(&self, filter: &Filter) -> Value {
        let items: Vec<&Value> = (self.objects.iter())
            .filter(|(k, o)| filter.matches(k, o))
            .map(|(_, o)| o)
            .collect();
        let kind = (items.first().and_then(|o| o["kind"].as_str()))
            .map_or_else(|| "List".to_owned(), |kind| format!("{kind}List"));
        json!({
            "apiVersion": api_version(&filter.group, &filter.version),
            "kind": kind,
            "metadata": {"resourceVersion": self.rv.to_string()},
            "items": items,
        })
    }
}

/// A request path: `/api/{version}/...` or `/apis/{group}/{version}/...`, then
/// `[namespaces/{ns}/]{plural}[/{name}[/status]]`.
struct Target {
    group: String,
    version: String,
    plural: String,
    /// None for cluster-scoped objects and for collections across all namespaces.
    namespace: Option<String>,
    name: Option<String>,
    status: bool,
}

impl Target {
    fn parse(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let (namespace, plural, rest) = match rest {
            ["namespaces", namespace, plural, rest @ ..] => (Some(*namespace), *plural, rest),
            [plural, rest @ ..] => (None, *plural, rest),
            [] => return None,
        };
        let (name, status) = match rest {
            [] => (None, false),
            [name] => (Some(*name), false),
            [name, "status"] => (Some(*name), true),
            _ => return None,
        };
        Some(Self {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            namespace: namespace.map(Into::into),
            name: name.map(Into::into),
            status,
        })
    }

    fn key(&self, name: &str) -> Key {
        Key {
            group: self.group.clone(),
            version: self.version.clone(),
            plural: self.plural.clone(),
            namespace: self.namespace.clone().unwrap_or_default(),
            name: name.into(),
        }
    }
}

/// Which objects a LIST or WATCH is about.
struct Filter {
    group: String,
    version: String,
    plural: String,
    namespace: Option<String>,
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Filter {
    fn new(target: &Target, query: &HashMap<String, String>) -> Result<Self, Failure> {
        Ok(Self {
            group: target.group.clone(),
            version: target.version.clone(),
            plural: target.plural.clone(),
            namespace: target.namespace.clone(),
            labels: Requirement::parse_all(query.get("labelSelector"))?,
            fields: Requirement::parse_all(query.get("fieldSelector"))?,
        })
    }

    fn matches(&self, key: &Key, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        key.group == self.group
            && key.version == self.version
            && key.plural == self.plural
            && self
                .namespace
                .as_ref()
                .is_none_or(|ns| *ns == key.namespace)
            && (self.labels.iter()).all(|r| r.matches(labels[&r.key].as_str()))
            && (self.fields.iter()).all(|r| {
                let pointer = format!("/{}", r.key.replace('.', "/"));
                r.matches(object.pointer(&pointer).and_then(Value::as_str))
            })
    }
}

/// One term of a label or field selector.
struct Requirement {
    key: String,
    op: Op,
    value: String,
}

enum Op {
    Equals,
    NotEquals,
    Exists,
    Absent,
}

impl Requirement {
    fn parse_all(selector: Option<&String>) -> Result<Vec<Self>, Failure> {
        let terms = selector.map_or("", |s| s).split(',').map(str::trim);
        (terms.filter(|t| !t.is_empty()))
            .map(|term| {
                if term.contains('(') {
                    let message = format!("set-based selectors are not supported: {term}");
                    return Err(Failure::new(400, "BadRequest", message));
                }
                let (key, op, value) = if let Some(key) = term.strip_prefix('!') {
                    (key, Op::Absent, "")
                } else if let Some((key, value)) = term.split_once("!=") {
                    (key, Op::NotEquals, value)
                } else if let Some((key, value)) =
                    term.split_once("==").or_else(|| term.split_once('='))
                {
                    (key, Op::Equals, value)
                } else {
                    (term, Op::Exists, "")
                };
                let (key, value) = (key.trim().into(), value.trim().into());
                Ok(Self { key, op, value })
            })
            .collect()
    }

    fn matches(&self, actual: Option<&str>) -> bool {
        match self.op {
            Op::Equals => actual == Some(self.value.as_str()),
            Op::NotEquals => actual != Some(self.value.as_str()),
            Op::Exists => actual.is_some(),
            Op::Absent => actual.is_none(),
        }
    }
}

/// A failed request, answered with a `Status` object.
#[derive(Debug)]
struct Failure {
    code: u16,
    reason: &'static str,
    message: String,
}

impl Failure {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self {
            code,
            reason,
            message,
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "reason": self.reason,
            "code": self.code,
            "message": self.message,
        });
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(status)).into_response()
    }
}

fn not_found(key: &Key) -> Failure {
    let message = format!("{} \"{}\" not found", key.plural, key.name);
    Failure::new(404, "NotFound", message)
}

/// The one HTTP handler: every path goes through here.
async fn serve(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(&shared, method, uri.path(), &query, &headers, &body)
        .unwrap_or_else(IntoResponse::into_response)
}

fn handle(
    shared: &Arc<Shared>,
    method: Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, Failure> {
    let target = Target::parse(path)
        .ok_or_else(|| Failure::new(404, "NotFound", format!("no route for {path}")))?;
    let body: Value = match body {
        [] => Value::Null,
        body => serde_json::from_slice(body)
            .map_err(|e| Failure::new(400, "BadRequest", e.to_string()))?,
    };
    let object_body = || match &body {
        Value::Object(_) if body["metadata"].is_null() || body["metadata"].is_object() => {
            Ok(body.clone())
        }
        _ => Err(Failure::new(
            400,
            "BadRequest",
            "the body must be a JSON object",
        )),
    };
    let not_allowed = || {
        Failure::new(
            405,
            "MethodNotAllowed",
            format!("{method} {path} is not supported"),
        )
    };

    let Some(name) = &target.name else {
        let filter = Filter::new(&target, query)?;
        return match method {
            Method::GET if matches!(query.get("watch").map(String::as_str), Some("true" | "1")) => {
                Ok(watch(shared.clone(), filter, query))
            }
            Method::GET => Ok(Json(shared.read(|s| s.list(&filter))).into_response()),
            Method::POST => {
                let body = object_body()?;
                let created = shared.write(|s| s.create(target.key(""), body))?;
                Ok((StatusCode::CREATED, Json(created)).into_response())
            }
            _ => Err(not_allowed()),
        };
    };
    let key = target.key(name);
    let how = if target.status {
        Write::Status
    } else {
        Write::Main
    };
    let object = match method {
        Method::GET => shared
            .read(|s| s.objects.get(&key).cloned())
            .ok_or_else(|| not_found(&key))?,
        Method::PUT => {
            let body = object_body()?;
            shared.write(|s| s.replace(&key, body, how))?
        }
        Method::PATCH => {
            let content_type = headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let content_type = content_type.split(';').next().unwrap_or_default().trim();
            let body = object_body()?;
            shared.write(|s| s.patch(&key, content_type, body, how))?
        }
        Method::DELETE => shared
            .write(|s| s.delete(&key))
            .ok_or_else(|| not_found(&key))?,
        _ => return Err(not_allowed()),
    };
    Ok(Json(object).into_response())
}

/// A WATCH: one `{"type", "object"}` JSON line per event, until `timeoutSeconds` (default one
/// hour) passes with nothing to send.
fn watch(shared: Arc<Shared>, filter: Filter, query: &HashMap<String, String>) -> Response {
    struct Watch {
        shared: Arc<Shared>,
        filter: Filter,
        changed: watch::Receiver<u64>,
        pending: VecDeque<Bytes>,
        cursor: u64,
        deadline: Instant,
    }
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    let changed = shared.changed.subscribe();
    let (pending, cursor) =
        shared.read(|s| match query.get("resourceVersion").map(String::as_str) {
            None | Some("" | "0") => {
                let current = s.objects.iter().filter(|(k, o)| filter.matches(k, o));
                (current.map(|(_, o)| event_line("ADDED", o)).collect(), s.rv)
            }
            Some(rv) => (VecDeque::new(), rv.parse().unwrap_or(0)),
        });
    let start = Watch {
        shared,
        filter,
        changed,
        pending,
        cursor,
        deadline: Instant::now() + Duration::from_secs(timeout),
    };
    let lines = futures::stream::unfold(start, |mut w| async move {
        loop {
            if let Some(line) = w.pending.pop_front() {
                return Some((Ok::<_, Infallible>(line), w));
            }
            w.changed.borrow_and_update();
            w.shared.read(|s| {
                let first = s.history.partition_point(|e| e.rv <= w.cursor);
                let events = s.history[first..]
                    .iter()
                    .filter(|e| w.filter.matches(&e.key, &e.object));
                w.pending
                    .extend(events.map(|e| event_line(e.kind, &e.object)));
                w.cursor = s.rv;
            });
            if w.pending.is_empty() {
                tokio::select! {
                    changed = w.changed.changed() => changed.ok()?,
                    () = tokio::time::sleep_until(w.deadline) => return None,
                }
            }
        }
    });
    (
        [(CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    line.into()
}

/// RFC 7386 JSON merge patch: objects merge key by key, `null` removes, the rest replaces.
fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let target = target.as_object_mut().expect("made an object above");
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge(target.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

/// 409 if `body` names a resourceVersion other than the stored one.
fn check_resource_version(stored: &Value, body: &Value) -> Result<(), Failure> {
    match body["metadata"]["resourceVersion"].as_str() {
        Some(rv) if !rv.is_empty() && stored["metadata"]["resourceVersion"] != rv => {
            Err(Failure::new(
                409,
                "Conflict",
                "the object has been modified; please apply your changes to the latest version and try again",
            ))
        }
        _ => Ok(()),
    }
}

/// Sets `dst[field]` to `src[field]`, or removes it if `src` has none.
fn copy(dst: &mut Value, src: &Value, field: &str) {
    match src.get(field) {
        Some(value) => dst[field] = value.clone(),
        None => remove(dst, field),
    }
}

fn remove(value: &mut Value, field: &str) {
    if let Some(object) = value.as_object_mut() {
        object.remove(field);
    }
}

fn no_finalizers(object: &Value) -> bool {
    object["metadata"]["finalizers"]
        .as_array()
        .is_none_or(Vec::is_empty)
}

fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.into()
    } else {
        format!("{group}/{version}")
    }
}

/// Now in RFC 3339 with whole seconds, as Kubernetes writes timestamps.
fn now() -> String {
    format!("{:.0}", k8s_openapi::jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::{apps::v1::Deployment, core::v1::ConfigMap};
    use kube::{
        Api,
        api::{DeleteParams, ListParams, Patch, PatchParams, PostParams},
        runtime::{WatchStreamExt, watcher},
    };

    use super::*;

    const WAIT: Duration = Duration::from_secs(5);

    fn config_map(value: Value) -> ConfigMap {
        serde_json::from_value(value).expect("a ConfigMap")
    }

    fn names(list: &[ConfigMap]) -> Vec<&str> {
        list.iter()
            .map(|c| c.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn config_map_round_trip() -> anyhow::Result<()> {
        let fake = FakeKube::start().await;
        let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
        let a = config_map(
            json!({"metadata": {"name": "a", "labels": {"app": "x"}}, "data": {"k": "1"}}),
        );

        let created = api.create(&PostParams::default(), &a).await?;
        assert_eq!(created.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(created.metadata.generation, Some(1));
        assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
        let again = api.create(&PostParams::default(), &a).await.unwrap_err();
        assert!(matches!(again, kube::Error::Api(s) if s.is_already_exists() && s.code == 409));
        assert_eq!(api.get("a").await?, created);

        let apply = PatchParams::apply("test").force();
        let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k2": "2"}});
        let applied = api.patch("a", &apply, &Patch::Apply(patch)).await?;
        let data = applied.data.clone().unwrap();
        assert_eq!((data["k"].as_str(), data["k2"].as_str()), ("1", "2"));
        let rv = |c: &ConfigMap| {
            c.metadata
                .resource_version
                .clone()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        };
        assert!(rv(&applied) > rv(&created));
        let merge = Patch::Merge(json!({"data": {"k": null}}));
        let merged = api.patch("a", &PatchParams::default(), &merge).await?;
        assert_eq!(merged.data.unwrap().keys().collect::<Vec<_>>(), ["k2"]);

        let patch = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "labels": {"app": "y"}}});
        api.patch("b", &apply, &Patch::Apply(patch)).await?;
        assert_eq!(
            names(&api.list(&ListParams::default()).await?.items),
            ["a", "b"]
        );
        assert_eq!(
            names(
                &api.list(&ListParams::default().labels("app=x"))
                    .await?
                    .items
            ),
            ["a"]
        );
        assert_eq!(
            names(
                &api.list(&ListParams::default().labels("app!=x"))
                    .await?
                    .items
            ),
            ["b"]
        );
        assert_eq!(
            names(
                &api.list(&ListParams::default().fields("metadata.name=b"))
                    .await?
                    .items
            ),
            ["b"]
        );
        let elsewhere: Api<ConfigMap> = Api::namespaced(fake.client(), "other");
        assert!(
            elsewhere
                .list(&ListParams::default())
                .await?
                .items
                .is_empty()
        );

        api.delete("a", &DeleteParams::default()).await?;
        assert_eq!(api.get_opt("a").await?, None);
        let missing = api.get("a").await.unwrap_err();
        assert!(
            matches!(missing, kube::Error::Api(s) if s.is_not_found() && s.reason == "NotFound")
        );
        assert_eq!(fake.objects().len(), 1);
        assert_eq!(fake.objects()[0]["kind"], "ConfigMap");
        Ok(())
    }

    #[tokio::test]
    async fn watcher_sees_list_then_changes() -> anyhow::Result<()> {
        let fake = FakeKube::start().await;
        let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
        api.create(
            &PostParams::default(),
            &config_map(json!({"metadata": {"name": "before"}})),
        )
        .await?;
        let mut events = watcher(api.clone(), watcher::Config::default()).boxed();
        let mut next = async || {
            tokio::time::timeout(WAIT, events.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
        };

        assert!(matches!(next().await, watcher::Event::Init));
        assert!(
            matches!(next().await, watcher::Event::InitApply(c) if c.metadata.name.as_deref() == Some("before"))
        );
        assert!(matches!(next().await, watcher::Event::InitDone));
        api.create(
            &PostParams::default(),
            &config_map(json!({"metadata": {"name": "after"}})),
        )
        .await?;
        assert!(
            matches!(next().await, watcher::Event::Apply(c) if c.metadata.name.as_deref() == Some("after"))
        );
        fake.edit_direct(&res::<ConfigMap>(), "default", "after", |c| {
            c["data"] = json!({"x": "1"})
        });
        assert!(matches!(next().await, watcher::Event::Apply(c) if c.data.is_some()));
        fake.delete_direct(&res::<ConfigMap>(), "default", "before");
        assert!(
            matches!(next().await, watcher::Event::Delete(c) if c.metadata.name.as_deref() == Some("before"))
        );
        Ok(())
    }

    #[tokio::test]
    async fn watch_resumes_after_timeout() -> anyhow::Result<()> {
        let fake = FakeKube::start().await;
        let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
        let config = watcher::Config::default().timeout(1);
        let mut names = watcher(api.clone(), config)
            .applied_objects()
            .map_ok(|c| c.metadata.name.unwrap())
            .boxed();
        let mut next = async || {
            tokio::time::timeout(WAIT, names.try_next())
                .await
                .unwrap()
                .unwrap()
                .unwrap()
        };
        api.create(
            &PostParams::default(),
            &config_map(json!({"metadata": {"name": "one"}})),
        )
        .await?;
        assert_eq!(next().await, "one");
        tokio::time::sleep(Duration::from_millis(1500)).await; // the first watch has ended
        api.create(
            &PostParams::default(),
            &config_map(json!({"metadata": {"name": "two"}})),
        )
        .await?;
        assert_eq!(next().await, "two");
        Ok(())
    }

    #[tokio::test]
    async fn delete_cascades_to_controlled_objects() -> anyhow::Result<()> {
        let fake = FakeKube::start().await;
        let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
        let owner = api
            .create(
                &PostParams::default(),
                &config_map(json!({"metadata": {"name": "owner"}})),
            )
            .await?;
        let reference = |controller: bool| {
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                    "uid": owner.metadata.uid.clone().unwrap(), "controller": controller}])
        };
        let owned = json!({"metadata": {"name": "owned", "ownerReferences": reference(true)}});
        let referring =
            json!({"metadata": {"name": "referring", "ownerReferences": reference(false)}});
        api.create(&PostParams::default(), &config_map(owned))
            .await?;
        api.create(&PostParams::default(), &config_map(referring))
            .await?;

        let waiter = fake.wait_for(
            |f| f.get(&res::<ConfigMap>(), "default", "owned").is_none(),
            WAIT,
        );
        let params = DeleteParams::default();
        let (deleted, waited) = tokio::join!(api.delete("owner", &params), waiter);
        deleted?;
        waited?;
        assert_eq!(fake.get_as::<ConfigMap>("default", "owner"), None);
        assert!(fake.get_as::<ConfigMap>("default", "referring").is_some());
        Ok(())
    }

    #[tokio::test]
    async fn finalizers_delay_deletion() -> anyhow::Result<()> {
        let fake = FakeKube::start().await;
        let api: Api<ConfigMap> = Api::default_namespaced(fake.client());
        let held = json!({"metadata": {"name": "held", "finalizers": ["test/hold"]}});
        api.create(&PostParams::default(), &config_map(held))
            .await?;
        api.delete("held", &DeleteParams::default()).await?;
        let marked = api.get("held").await?;
        assert!(marked.metadata.deletion_timestamp.is_some());
        let release = Patch::Merge(json!({"metadata": {"finalizers": null}}));
        api.patch("held", &PatchParams::default(), &release).await?;
        assert_eq!(api.get_opt("held").await?, None);
        Ok(())
    }

    #[tokio::test]
    async fn status_patch_changes_only_status() -> anyhow::Result<()> {
        let fake = FakeKube::start().await;
        let api: Api<Deployment> = Api::default_namespaced(fake.client());
        let deployment: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "web", "image": "nginx"}]}},
            },
            "status": {"replicas": 99},
        }))?;
        let created = api.create(&PostParams::default(), &deployment).await?;
        assert_eq!(created.status, None, "status is ignored on create");

        let status = Patch::Merge(json!({"status": {"readyReplicas": 2}, "spec": {"replicas": 5}}));
        let patched = api
            .patch_status("web", &PatchParams::default(), &status)
            .await?;
        assert_eq!(patched.status.unwrap().ready_replicas, Some(2));
        assert_eq!(patched.spec, created.spec);
        assert_eq!(patched.metadata.generation, Some(1));

        let spec = Patch::Merge(json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 0}}));
        let scaled = api.patch("web", &PatchParams::default(), &spec).await?;
        assert_eq!(scaled.metadata.generation, Some(2));
        assert_eq!(scaled.status.unwrap().ready_replicas, Some(2));

        // A no-op write changes nothing, not even the resourceVersion.
        let same = api.patch("web", &PatchParams::default(), &spec).await?;
        assert_eq!(
            same.metadata.resource_version,
            scaled.metadata.resource_version
        );
        Ok(())
    }

    /// The real `Controller`: a Deployment's controller-owned ConfigMap is created, recreated
    /// after a user deletes it, and garbage-collected with the Deployment.
    #[tokio::test]
    async fn controller_reconciles_owned_objects() -> anyhow::Result<()> {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

        use kube::{
            ResourceExt,
            runtime::{Controller, controller::Action},
        };

        let fake = FakeKube::start().await;
        let client = fake.client();
        let reconciles = Arc::new(AtomicUsize::new(0));
        let reconcile = async |deployment: Arc<Deployment>,
                               ctx: Arc<(kube::Client, Arc<AtomicUsize>)>| {
            ctx.1.fetch_add(1, SeqCst);
            let name = format!("{}-config", deployment.name_any());
            let owner = deployment.controller_owner_ref(&()).unwrap();
            let config = json!({"apiVersion": "v1", "kind": "ConfigMap",
                                "metadata": {"name": name, "ownerReferences": [owner]}});
            let api: Api<ConfigMap> =
                Api::namespaced(ctx.0.clone(), &deployment.namespace().unwrap());
            api.patch(
                &name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(config),
            )
            .await?;
            Ok::<_, kube::Error>(Action::await_change())
        };
        let controller = Controller::new(
            Api::<Deployment>::all(client.clone()),
            watcher::Config::default(),
        )
        .owns(
            Api::<ConfigMap>::all(client.clone()),
            watcher::Config::default(),
        )
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_millis(100)),
            Arc::new((client.clone(), reconciles.clone())),
        )
        .for_each(async |_| ());
        let controller = tokio::spawn(controller);

        let deployments: Api<Deployment> = Api::default_namespaced(client);
        let deployment =
            json!({"metadata": {"name": "web"}, "spec": {"selector": {}, "template": {}}});
        deployments
            .create(&PostParams::default(), &serde_json::from_value(deployment)?)
            .await?;
        let config = |f: &FakeKube| f.get(&res::<ConfigMap>(), "default", "web-config");
        fake.wait_for(|f| config(f).is_some(), WAIT).await?;
        let uid = config(&fake).unwrap()["metadata"]["uid"].clone();

        fake.delete_direct(&res::<ConfigMap>(), "default", "web-config");
        fake.wait_for(
            |f| config(f).is_some_and(|c| c["metadata"]["uid"] != uid),
            WAIT,
        )
        .await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            reconciles.load(SeqCst) < 10,
            "the controller does not loop on its own no-op writes"
        );

        deployments.delete("web", &DeleteParams::default()).await?;
        assert!(config(&fake).is_none());
        controller.abort();
        Ok(())
    }

    #[tokio::test]
    async fn events_and_generate_name() -> anyhow::Result<()> {
        let fake = FakeKube::start().await;
        let client = reqwest::Client::new();
        for path in [
            "/apis/events.k8s.io/v1/namespaces/ns/events",
            "/api/v1/namespaces/ns/events",
        ] {
            let event = json!({"metadata": {"generateName": "web-"}, "reason": "Scaled"});
            let response = client
                .post(format!("{}{path}", fake.url()))
                .body(event.to_string())
                .send()
                .await?;
            assert_eq!(response.status(), 201);
            let stored: Value = serde_json::from_str(&response.text().await?)?;
            assert!(
                stored["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("web-")
            );
        }
        assert_eq!(fake.objects().len(), 2);
        let response = client
            .get(format!(
                "{}/apis/x.dev/v1/namespaces/ns/things/none",
                fake.url()
            ))
            .send()
            .await?;
        assert_eq!(response.status(), 404);
        let status: Value = serde_json::from_str(&response.text().await?)?;
        assert_eq!(
            (&status["kind"], &status["reason"], &status["code"]),
            (&json!("Status"), &json!("NotFound"), &json!(404))
        );
        Ok(())
    }
}
