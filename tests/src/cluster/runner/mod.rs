//! The pod runner: it stands in for the container runtime on kwok's fake
//! nodes ([`super::Pods::Run`]). kwok plays the kubelet's pod setup (a pod
//! IP on loopback, Pending); for every such pod the runner runs each
//! container's real program as a local process ([`launch::Programs`]), with
//! the pod's environment ([`env`]) and volumes ([`volumes`]), listening on
//! the pod IP. It sets Running, sets Ready from the pod's own readiness probe
//! ([`probe`]), restarts a container that exits on its own, and when the pod
//! gets a `deletionTimestamp` it sends SIGTERM, waits up to the pod's grace
//! period, sends SIGKILL, records the exit and removes the pod, as the
//! kubelet does. What it saw is kept in a [`Journal`] for the tests.
//!
//! Not done here: liveness and startup probes, lifecycle hooks, resource
//! limits, user IDs (everything runs as the test's user), init containers.

pub mod env;
pub mod launch;
pub mod probe;
pub mod volumes;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, Preconditions},
    runtime::{WatchStreamExt, watcher},
};
use serde_json::json;
use tokio::{sync::watch, task::JoinSet};

use launch::{Launch, Mapping, Programs};
use probe::{Counter, Schedule};

/// The PATH every pod's program gets.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long a container that ended waits before it starts again.
const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// How a container's process ended.
#[derive(Clone, Debug)]
pub struct Exit {
    pub namespace: String,
    pub pod: String,
    pub container: String,
    /// The exit code, or None when a signal ended it.
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// SIGKILLed because the grace period ran out.
    pub killed: bool,
    /// Ended because its pod was deleted (otherwise: on its own).
    pub deleting: bool,
    pub at: Instant,
}

impl Exit {
    /// Stopped for its pod's deletion and exited 0 within the grace period.
    pub fn graceful(&self) -> bool {
        self.deleting && self.code == Some(0) && !self.killed
    }
}

/// A pod the runner saw being deleted, with its annotations at that moment.
#[derive(Clone, Debug)]
pub struct Deletion {
    pub namespace: String,
    pub pod: String,
    pub annotations: BTreeMap<String, String>,
    /// Whether its Ready condition was still True (the ReplicaSet controller
    /// deletes pods that are not Ready before any others).
    pub ready: bool,
}

/// A change of a pod's Ready condition, as the runner set it.
#[derive(Clone, Debug)]
pub struct Readiness {
    pub namespace: String,
    pub pod: String,
    pub ready: bool,
    pub at: Instant,
}

/// Everything the runner saw and did, in order.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    pub exits: Vec<Exit>,
    pub deletions: Vec<Deletion>,
    pub readiness: Vec<Readiness>,
    /// Pods it could not run (unknown image, missing Secret, ...).
    pub errors: Vec<String>,
}

/// A running pod runner; dropping it stops every process it started.
pub struct PodRunner {
    journal: Arc<Mutex<Journal>>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    client: Client,
    programs: Programs,
    dir: PathBuf,
    server: String,
    ca_cert: PathBuf,
    journal: Arc<Mutex<Journal>>,
    /// For HTTP probes.
    http: reqwest::Client,
}

impl PodRunner {
    /// Runs the pods of `plane` (started with [`super::Pods::Run`]), with an
    /// admin `client`; pod folders and logs go under `plane.dir/pods`.
    pub fn start(plane: &super::ControlPlane, client: Client, programs: Programs) -> Self {
        let journal = Arc::new(Mutex::new(Journal::default()));
        let shared = Arc::new(Shared {
            client,
            programs,
            dir: plane.dir.join("pods"),
            server: plane.server.clone(),
            ca_cert: plane.ca_cert.clone(),
            journal: journal.clone(),
            http: reqwest::Client::new(),
        });
        let task = tokio::spawn(watch_pods(shared));
        Self { journal, task }
    }

    /// A copy of the journal so far.
    pub fn journal(&self) -> Journal {
        self.journal.lock().unwrap().clone()
    }
}

impl Drop for PodRunner {
    fn drop(&mut self) {
        // Aborting the watch drops every pod task, and with them their processes.
        self.task.abort();
    }
}

/// Follows every pod; one task per pod that kwok has given an IP.
async fn watch_pods(shared: Arc<Shared>) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let mut events = watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut running: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    // Pods whose task has ended: events about them (the last status patch,
    // the deletion) may still arrive, and must not start them again.
    let mut ended: HashSet<String> = HashSet::new();
    let mut tasks: JoinSet<String> = JoinSet::new();
    loop {
        tokio::select! {
            Some(Ok(uid)) = tasks.join_next(), if !tasks.is_empty() => {
                running.remove(&uid);
                ended.insert(uid);
            }
            event = events.next() => {
                let Some(event) = event else { return };
                match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                        let uid = pod.uid().unwrap_or_default();
                        if let Some(tx) = running.get(&uid) {
                            tx.send_replace(Some(pod));
                        } else if placed(&pod) && !ended.contains(&uid) {
                            let (tx, rx) = watch::channel(Some(pod));
                            running.insert(uid.clone(), tx);
                            let shared = shared.clone();
                            tasks.spawn(async move {
                                run_pod(shared, rx).await;
                                uid
                            });
                        }
                    }
                    Ok(watcher::Event::Delete(pod)) => {
                        let uid = pod.uid().unwrap_or_default();
                        if let Some(tx) = running.get(&uid) {
                            tx.send_replace(None);
                        }
                        ended.remove(&uid);
                    }
                    Ok(_) => {}
                    Err(error) => eprintln!("pod runner: watch: {error}"),
                }
            }
        }
    }
}

/// Scheduled, given an IP by kwok, and not finished.
fn placed(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    pod.spec.as_ref().is_some_and(|s| s.node_name.is_some())
        && status.is_some_and(|s| s.pod_ip.is_some())
        && !matches!(
            status.and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

fn deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// One container's process and what the runner knows about it.
struct ContainerRun {
    spec: Container,
    launch: Launch,
    mapping: Mapping,
    log: PathBuf,
    child: Option<Child>,
    restarts: i32,
    started_at: String,
    last_exit: Option<Exit>,
    ready: Counter,
    next_probe: Instant,
    /// When a process that ended may start again (restartPolicy Always,
    /// after a short back-off).
    next_start: Instant,
}

/// A child that is SIGKILLed when dropped (when the runner goes away).
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run_pod(shared: Arc<Shared>, mut updates: watch::Receiver<Option<Pod>>) {
    let Some(pod) = updates.borrow().clone() else {
        return;
    };
    let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    if let Err(error) = run_pod_inner(&shared, pod, &mut updates).await {
        let message = format!("{namespace}/{name}: {error:#}");
        eprintln!("pod runner: {message}");
        shared.journal.lock().unwrap().errors.push(message);
    }
}

async fn run_pod_inner(
    shared: &Shared,
    mut pod: Pod,
    updates: &mut watch::Receiver<Option<Pod>>,
) -> anyhow::Result<()> {
    let (namespace, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &namespace);
    let pod_dir = shared.dir.join(format!("{namespace}_{name}"));
    std::fs::create_dir_all(&pod_dir)?;

    // Volumes and environment may wait for Secrets the operator is still writing.
    let mut containers = loop {
        if deleting(&pod) {
            return finish(shared, &pods, &pod, Vec::new()).await;
        }
        match prepare(shared, &pod, &pod_dir).await {
            Ok(containers) => break containers,
            Err(error) => {
                let waiting = json!({"reason": "CreateContainerConfigError", "message": format!("{error:#}")});
                let _ = patch_status(&pods, &name, waiting_status(&pod, waiting)).await;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    changed = updates.changed() => {
                        if changed.is_err() { return Ok(()); }
                    }
                }
                match updates.borrow().clone() {
                    Some(latest) => pod = latest,
                    None => return Ok(()),
                }
            }
        }
    };
    for container in &mut containers {
        start(container)?;
    }
    let mut pod_ready = false;
    patch_status(&pods, &name, running_status(&containers, pod_ready)).await?;

    let mut every = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            changed = updates.changed() => {
                let latest = updates.borrow().clone();
                match latest {
                    // Removed behind the runner's back (force delete): stop at once.
                    None => return Ok(()),
                    Some(latest) if changed.is_ok() && deleting(&latest) => {
                        return finish(shared, &pods, &latest, containers).await;
                    }
                    Some(latest) => pod = latest,
                }
                if changed.is_err() {
                    return Ok(());
                }
            }
            _ = every.tick() => {
                let mut changed = false;
                for container in &mut containers {
                    changed |= check(shared, &pod, container).await;
                }
                let ready = containers.iter().all(|c| c.child.is_some() && c.ready_now());
                if ready != pod_ready {
                    pod_ready = ready;
                    changed = true;
                    shared.journal.lock().unwrap().readiness.push(Readiness {
                        namespace: namespace.clone(),
                        pod: name.clone(),
                        ready,
                        at: Instant::now(),
                    });
                }
                if changed {
                    patch_status(&pods, &name, running_status(&containers, pod_ready)).await?;
                }
            }
        }
    }
}

impl ContainerRun {
    /// Ready by its probe (a container without one is ready once started).
    fn ready_now(&self) -> bool {
        self.spec.readiness_probe.is_none() || self.ready.passing()
    }
}

/// Resolves every container's volumes, environment and command.
async fn prepare(shared: &Shared, pod: &Pod, pod_dir: &Path) -> anyhow::Result<Vec<ContainerRun>> {
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .context("no pod IP")?;
    let volumes = volumes::materialize(
        &shared.client,
        pod,
        pod_dir,
        &shared.dir.join("claims"),
        &shared.ca_cert,
    )
    .await?;
    let mut runs = Vec::new();
    for container in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        let image = container.image.clone().unwrap_or_default();
        let program = shared
            .programs
            .for_image(&image)
            .with_context(|| format!("no local program for image {image}"))?;
        let mut env = env::resolve(&shared.client, pod, container).await?;
        let mounts = volumes.mounts(container)?;
        // In-cluster client config: the token at its usual path, and the API
        // server's address, which here is not the kubernetes Service's.
        if let Some(folder) = &volumes.service_account
            && mounts
                .iter()
                .any(|(path, _)| path == volumes::SERVICE_ACCOUNT_DIR)
        {
            let kubeconfig = pod_dir.join("kubeconfig");
            std::fs::write(&kubeconfig, pod_kubeconfig(&shared.server, folder))?;
            env.push(("KUBECONFIG".into(), kubeconfig.display().to_string()));
        }
        let mapping = Mapping::new(&ip, mounts, program);
        let launch = launch::launch(container, program, env, &mapping)?;
        let readiness_delay = container
            .readiness_probe
            .as_ref()
            .map(|p| Schedule::of(p).initial_delay)
            .unwrap_or_default();
        runs.push(ContainerRun {
            spec: container.clone(),
            launch,
            mapping,
            log: pod_dir.join(format!("{}.log", container.name)),
            child: None,
            restarts: 0,
            started_at: String::new(),
            last_exit: None,
            ready: Counter::new(false),
            next_probe: Instant::now() + readiness_delay,
            next_start: Instant::now(),
        });
    }
    Ok(runs)
}

fn pod_kubeconfig(server: &str, service_account: &Path) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: cluster\n  cluster:\n    server: {server}\n    \
         certificate-authority: {ca}\nusers:\n- name: pod\n  user:\n    tokenFile: {token}\n\
         contexts:\n- name: pod\n  context:\n    cluster: cluster\n    user: pod\ncurrent-context: pod\n",
        ca = service_account.join("ca.crt").display(),
        token = service_account.join("token").display(),
    )
}

fn start(container: &mut ContainerRun) -> anyhow::Result<()> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&container.log)?;
    let mut command = std::process::Command::new(&container.launch.program);
    command
        .args(&container.launch.args)
        .env_clear()
        .env("PATH", PATH)
        .envs(container.launch.env.iter().cloned())
        .current_dir(container.log.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out);
    let child = super::spawn_durable(command)
        .with_context(|| format!("starting {}", container.launch.program.display()))?;
    container.child = Some(Child(child));
    container.started_at = now();
    Ok(())
}

/// Reaps a process that ended on its own (and restarts it), runs the
/// readiness probe when due; true when the container's status changed.
async fn check(shared: &Shared, pod: &Pod, container: &mut ContainerRun) -> bool {
    let mut changed = false;
    if let Some(child) = container.child.as_mut()
        && let Ok(Some(status)) = child.0.try_wait()
    {
        let exit = exit_of(pod, &container.spec.name, status, false, false);
        shared.journal.lock().unwrap().exits.push(exit.clone());
        container.last_exit = Some(exit);
        container.child = None;
        container.ready = Counter::new(false);
        container.next_start = Instant::now() + RESTART_BACKOFF;
        changed = true;
    }
    if container.child.is_none() {
        if Instant::now() >= container.next_start {
            match start(container) {
                Ok(()) => {
                    container.restarts += 1;
                    changed = true;
                }
                Err(error) => {
                    let message = format!(
                        "{}/{}: restarting {}: {error:#}",
                        pod.namespace().unwrap_or_default(),
                        pod.name_any(),
                        container.spec.name
                    );
                    eprintln!("pod runner: {message}");
                    shared.journal.lock().unwrap().errors.push(message);
                    container.next_start = Instant::now() + RESTART_BACKOFF;
                }
            }
        }
        return changed;
    }
    let Some(readiness) = container.spec.readiness_probe.clone() else {
        return changed;
    };
    if Instant::now() < container.next_probe {
        return changed;
    }
    let schedule = Schedule::of(&readiness);
    container.next_probe = Instant::now() + schedule.period;
    let before = container.ready.passing();
    let passed = probe::run(
        &shared.http,
        &readiness,
        &container.spec,
        &container.mapping,
        &container.launch.env,
    )
    .await;
    let after = container.ready.record(passed, &schedule);
    changed || before != after
}

/// Stops the pod's processes (SIGTERM, the grace period, SIGKILL), records
/// their exits and removes the pod.
async fn finish(
    shared: &Shared,
    pods: &Api<Pod>,
    pod: &Pod,
    mut containers: Vec<ContainerRun>,
) -> anyhow::Result<()> {
    let name = pod.name_any();
    shared.journal.lock().unwrap().deletions.push(Deletion {
        namespace: pod.namespace().unwrap_or_default(),
        pod: name.clone(),
        annotations: pod.annotations().clone(),
        ready: super::hosts::ready(pod),
    });
    let grace = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
        .unwrap_or(30);
    let deadline = Instant::now() + Duration::from_secs(u64::try_from(grace).unwrap_or(0));
    for container in &containers {
        if let Some(child) = &container.child {
            // SAFETY: signals a child this runner started and has not reaped.
            unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
        }
    }
    for container in &mut containers {
        let Some(mut child) = container.child.take() else {
            continue;
        };
        let pid = child.0.id() as i32;
        let mut exited = tokio::task::spawn_blocking(move || child.0.wait());
        let (status, killed) = match tokio::time::timeout_at(deadline.into(), &mut exited).await {
            Ok(status) => (status, false),
            Err(_) => {
                // SAFETY: the child is not reaped until `wait` above returns.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                (exited.await, true)
            }
        };
        let status = status?.with_context(|| format!("waiting for pid {pid}"))?;
        let exit = exit_of(pod, &container.spec.name, status, killed, true);
        shared.journal.lock().unwrap().exits.push(exit.clone());
        container.last_exit = Some(exit);
    }
    let _ = patch_status(pods, &name, terminated_status(&containers)).await;
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match pods.delete(&name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

fn exit_of(
    pod: &Pod,
    container: &str,
    status: std::process::ExitStatus,
    killed: bool,
    deleting: bool,
) -> Exit {
    use std::os::unix::process::ExitStatusExt;
    Exit {
        namespace: pod.namespace().unwrap_or_default(),
        pod: pod.name_any(),
        container: container.to_owned(),
        code: status.code(),
        signal: status.signal(),
        killed,
        deleting,
        at: Instant::now(),
    }
}

fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now())
        .to_string()
}

fn condition(kind: &str, ok: bool) -> serde_json::Value {
    json!({
        "type": kind,
        "status": if ok { "True" } else { "False" },
        "reason": if ok { serde_json::Value::Null } else { json!("ContainersNotReady") },
        "lastTransitionTime": now(),
    })
}

fn running_status(containers: &[ContainerRun], ready: bool) -> serde_json::Value {
    let statuses: Vec<serde_json::Value> = containers
        .iter()
        .map(|c| {
            let state = match &c.child {
                Some(_) => json!({"running": {"startedAt": c.started_at}}),
                None => json!({"waiting": {"reason": "CrashLoopBackOff"}}),
            };
            json!({
                "name": c.spec.name,
                "image": c.spec.image,
                "imageID": "",
                "containerID": c.child.as_ref().map(|ch| format!("runner://{}", ch.0.id())),
                "ready": c.child.is_some() && c.ready_now(),
                "started": c.child.is_some(),
                "restartCount": c.restarts,
                "state": state,
                "lastState": c.last_exit.as_ref().map(terminated).map(|t| json!({"terminated": t})).unwrap_or(json!({})),
            })
        })
        .collect();
    json!({
        "phase": "Running",
        "conditions": [condition("Ready", ready), condition("ContainersReady", ready)],
        "containerStatuses": statuses,
    })
}

fn terminated(exit: &Exit) -> serde_json::Value {
    json!({
        "exitCode": exit.code.unwrap_or(128 + exit.signal.unwrap_or(0)),
        "signal": exit.signal,
        "reason": if exit.code == Some(0) { "Completed" } else { "Error" },
        "finishedAt": now(),
    })
}

fn terminated_status(containers: &[ContainerRun]) -> serde_json::Value {
    let statuses: Vec<serde_json::Value> = containers
        .iter()
        .map(|c| {
            json!({
                "name": c.spec.name,
                "image": c.spec.image,
                "imageID": "",
                "ready": false,
                "started": false,
                "restartCount": c.restarts,
                "state": c.last_exit.as_ref().map(|e| json!({"terminated": terminated(e)})).unwrap_or(json!({"waiting": {"reason": "ContainerCreating"}})),
            })
        })
        .collect();
    json!({
        "conditions": [condition("Ready", false), condition("ContainersReady", false)],
        "containerStatuses": statuses,
    })
}

fn waiting_status(pod: &Pod, waiting: serde_json::Value) -> serde_json::Value {
    let statuses: Vec<serde_json::Value> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| json!({"name": c.name, "image": c.image, "imageID": "", "ready": false, "restartCount": 0, "state": {"waiting": waiting}}))
        .collect();
    json!({"containerStatuses": statuses})
}

async fn patch_status(
    pods: &Api<Pod>,
    name: &str,
    status: serde_json::Value,
) -> anyhow::Result<()> {
    pods.patch_status(
        name,
        &PatchParams::default(),
        &Patch::Strategic(json!({ "status": status })),
    )
    .await
    .with_context(|| format!("updating the status of pod {name}"))?;
    Ok(())
}
