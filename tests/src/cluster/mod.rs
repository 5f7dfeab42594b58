//! A real Kubernetes control plane for the operator's tests: etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler and kwok (standing
//! in for kubelets: it moves pods on its fake Nodes to Running and Ready; no
//! container runs), built by `make testenv` from the pinned Go module in
//! `testenv/`. It is started once per test binary, on free loopback ports with
//! a fresh PKI, and every test takes a namespace of its own.
//!
//! The tests must run in a network namespace with only loopback
//! (`scripts/isolated`, which `make rust-test` uses): Services get cluster IPs
//! and the operator resolves in-cluster names, and none of that may leave
//! this machine.
//!
//! By default kwok makes every scheduled pod Running and Ready and nothing
//! runs ([`Pods::Simulated`]). With [`Pods::Run`] kwok only gives pods their
//! IPs and the [`runner`] runs each pod's real program as a local process.

mod certs;
pub mod hosts;
pub mod ingress;
mod process;
pub mod runner;
pub mod running;

use std::{
    path::{Path, PathBuf},
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Namespace, Node, PersistentVolume};
use kube::{
    Api, Client,
    api::PostParams,
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::json;

use process::Process;
pub use process::{die_with_parent, spawn_durable};

use crate::{free_port, workspace_root};

/// The version `testenv/` builds (k8s-openapi's `v1_33` types).
pub const KUBERNETES_VERSION: &str = "v1.33.13";
/// Fake Nodes that kwok manages.
pub const NODES: [&str; 3] = ["kwok-node-0", "kwok-node-1", "kwok-node-2"];
/// The pod IP range kwok hands out: loopback, so a pod IP is an address on this machine.
pub const POD_CIDR: &str = "127.64.0.0/16";
/// Pre-made PersistentVolumes (see [`pool_volume`]): one per managed Redis.
pub const PERSISTENT_VOLUMES: usize = 40;

/// The running control plane, shared by every test of one test binary.
pub struct ControlPlane {
    /// The admin kubeconfig (client certificate in `system:masters`).
    pub kubeconfig: PathBuf,
    /// `https://127.0.0.1:PORT`.
    pub server: String,
    pub ca_cert: PathBuf,
    /// Where the logs, certificates and kubeconfigs live.
    pub dir: PathBuf,
    pub bin: PathBuf,
}

/// Who moves a scheduled pod on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pods {
    /// kwok's default stages: Running and Ready at once, deleted at once; no
    /// program runs.
    Simulated,
    /// kwok gives the pod its IPs and leaves it Pending and not Ready
    /// (`kwok-pod-stages.yaml`); the [`runner`] runs its programs, sets
    /// Running and Ready, and stops and removes it when it is deleted.
    Run,
}

/// How the control plane starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub pods: Pods,
    /// Refuse to start outside a network namespace with only loopback (the
    /// tests); `make local-cluster` runs on the host's loopback instead.
    pub isolated_network: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            pods: Pods::Simulated,
            isolated_network: true,
        }
    }
}

type Started = (Options, Result<ControlPlane, String>);
static SHARED: OnceLock<Started> = OnceLock::new();
static NEXT: AtomicU32 = AtomicU32::new(0);

impl ControlPlane {
    /// The test binary's control plane with kwok's simulated pods, started by
    /// the first caller.
    ///
    /// Panics, with what to install or what went wrong, when it cannot start:
    /// a missing binary fails the tests, it never skips them.
    pub fn shared() -> &'static ControlPlane {
        Self::shared_with(Options::default())
    }

    /// [`Self::shared`] with other options; every caller in one process must
    /// ask for the same.
    pub fn shared_with(options: Options) -> &'static ControlPlane {
        let (started_with, result) = SHARED.get_or_init(|| {
            let result = start_on_own_thread(options).map_err(|e| format!("{e:#}"));
            (options, result)
        });
        assert_eq!(
            *started_with, options,
            "one control plane per process: it was started with other options"
        );
        match result {
            Ok(plane) => plane,
            Err(error) => panic!("the test control plane did not start: {error}"),
        }
    }

    /// A path to one of the `testenv/` binaries (`kubectl`, `helm`, ...).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// An admin client (a fresh one per test: a kube client belongs to the
    /// runtime it was made on).
    pub async fn client(&self) -> anyhow::Result<Client> {
        client_from(&self.kubeconfig).await
    }

    /// Creates a namespace of its own for a test: `PREFIX-N`.
    pub async fn namespace(&self, prefix: &str) -> anyhow::Result<String> {
        let name = format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::SeqCst));
        let namespaces: Api<Namespace> = Api::all(self.client().await?);
        namespaces
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}}))?,
            )
            .await?;
        Ok(name)
    }

    /// Writes a kubeconfig that authenticates with a bearer token (for
    /// example a ServiceAccount's, from the TokenRequest API).
    pub fn kubeconfig_for_token(&self, name: &str, token: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(format!("kubeconfig-{name}"));
        std::fs::write(
            &path,
            kubeconfig_yaml(
                &self.server,
                &self.ca_cert,
                &format!("token: {token}"),
                name,
            ),
        )?;
        Ok(path)
    }

    /// Runs a `testenv/` tool (kubectl, helm) against this control plane
    /// with the admin kubeconfig; returns its exit status and output.
    pub fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<Output> {
        self.run_as(&self.kubeconfig, tool, args)
    }

    /// [`Self::run`] with another kubeconfig.
    pub fn run_as(&self, kubeconfig: &Path, tool: &str, args: &[&str]) -> anyhow::Result<Output> {
        let home = self.dir.join("home");
        let output = std::process::Command::new(self.tool(tool))
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env("HOME", &home)
            .env("HELM_CACHE_HOME", home.join("helm-cache"))
            .env("HELM_CONFIG_HOME", home.join("helm-config"))
            .env("HELM_DATA_HOME", home.join("helm-data"))
            .current_dir(workspace_root())
            .output()
            .with_context(|| format!("running {tool}"))?;
        Ok(Output {
            command: format!("{tool} {}", args.join(" ")),
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// [`Self::run`], failing unless the tool exits 0; returns its stdout.
    pub fn run_ok(&self, tool: &str, args: &[&str]) -> anyhow::Result<String> {
        self.run(tool, args)?.ok()
    }
}

/// What a tool printed.
#[derive(Debug)]
pub struct Output {
    pub command: String,
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    /// The stdout of a command that succeeded, or an error with both streams.
    pub fn ok(self) -> anyhow::Result<String> {
        if self.success {
            Ok(self.stdout)
        } else {
            bail!(
                "`{}` failed:\n{}\n{}",
                self.command,
                self.stdout,
                self.stderr
            )
        }
    }
}

/// The reasons of the Events recorded for the object named `name`.
pub async fn event_reasons(client: &Client, namespace: &str, name: &str) -> Vec<String> {
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), namespace);
    let selector = format!("involvedObject.name={name}");
    events
        .list(&kube::api::ListParams::default().fields(&selector))
        .await
        .map(|list| list.items.into_iter().filter_map(|e| e.reason).collect())
        .unwrap_or_default()
}

/// A kube client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> anyhow::Result<Client> {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig)?,
        &KubeConfigOptions::default(),
    )
    .await?;
    Ok(Client::try_from(config)?)
}

/// Where `make testenv` puts the binaries, or `CHATSCALE_TESTENV_BIN`.
pub fn testenv_bin() -> PathBuf {
    std::env::var_os("CHATSCALE_TESTENV_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/testenv/bin"))
}

/// Where `make testenv` puts the third-party CRDs (Gateway API, Prometheus Operator).
pub fn testenv_crds() -> PathBuf {
    testenv_bin().join("../crds")
}

/// Fails unless this process is in a network namespace whose only interface
/// is loopback (see the module docs).
pub fn ensure_isolated_network() -> anyhow::Result<()> {
    let dev = std::fs::read_to_string("/proc/net/dev")?;
    let others: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|line| line.split(':').next())
        .map(str::trim)
        .filter(|name| *name != "lo")
        .collect();
    if !others.is_empty() {
        bail!(
            "the control-plane tests must run in a network namespace with only loopback, \
             so nothing they start reaches another address; this one has {others:?}. \
             Run them through scripts/isolated (as `make rust-test` does), e.g. \
             `scripts/isolated cargo test -p chatscale-operator --test cluster`"
        );
    }
    Ok(())
}

fn kubeconfig_yaml(server: &str, ca: &Path, user: &str, name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: chatscale-test\n  cluster:\n    \
         server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {name}\n  user:\n    \
         {user}\ncontexts:\n- name: {name}\n  context:\n    cluster: chatscale-test\n    \
         user: {name}\ncurrent-context: {name}\n",
        ca = ca.display(),
    )
}

/// Starts everything on a thread that lives as long as the test binary: the
/// processes die with the thread that started them (see [`process`]).
fn start_on_own_thread(options: Options) -> anyhow::Result<ControlPlane> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("control-plane".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            match runtime.block_on(start(options)) {
                Ok((plane, processes)) => {
                    remove_etcd_data_at_exit(&plane.dir);
                    let _ = tx.send(Ok(plane));
                    // Hold the processes (and this thread) until the test binary exits.
                    let _keep = processes;
                    loop {
                        std::thread::park();
                    }
                }
                Err(error) => {
                    let _ = tx.send(Err(error));
                }
            }
        })?;
    rx.recv().context("the control-plane thread ended")?
}

async fn start(options: Options) -> anyhow::Result<(ControlPlane, Vec<Process>)> {
    if options.isolated_network {
        ensure_isolated_network()?;
    }
    let bin = testenv_bin();
    for tool in [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "kubectl",
        "helm",
    ] {
        if !bin.join(tool).exists() {
            bail!(
                "{} is missing: run `make testenv` (builds the control plane from testenv/ \
                 with Go 1.24 or newer; install Go from https://go.dev/dl or Debian's golang)",
                bin.join(tool).display()
            );
        }
    }
    let dir = std::env::temp_dir().join(format!("chatscale-control-plane-{}", std::process::id()));
    remove_stale_runs();
    std::fs::create_dir_all(dir.join("home"))?;
    let pki = certs::write(&dir)?;
    let mut processes = Vec::new();

    // etcd
    let etcd_port = free_port();
    let peer_port = free_port();
    let etcd_url = format!("http://127.0.0.1:{etcd_port}");
    let peer_url = format!("http://127.0.0.1:{peer_port}");
    processes.push(Process::start(
        "etcd",
        &bin.join("etcd"),
        &strings(&[
            "--name=default",
            &format!("--data-dir={}", dir.join("etcd").display()),
            &format!("--listen-client-urls={etcd_url}"),
            &format!("--advertise-client-urls={etcd_url}"),
            &format!("--listen-peer-urls={peer_url}"),
            &format!("--initial-advertise-peer-urls={peer_url}"),
            &format!("--initial-cluster=default={peer_url}"),
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ]),
        &dir,
    )?);
    wait_for_port("etcd", etcd_port, &mut processes).await?;

    // kube-apiserver
    let api_port = free_port();
    let server = format!("https://127.0.0.1:{api_port}");
    let sa_key = pki.service_account_key.display().to_string();
    let sa_pub = pki.service_account_public_key.display().to_string();
    processes.push(Process::start(
        "kube-apiserver",
        &bin.join("kube-apiserver"),
        &strings(&[
            &format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            &format!("--secure-port={api_port}"),
            &format!("--cert-dir={}", dir.display()),
            &format!("--tls-cert-file={}", pki.serving_cert.display()),
            &format!("--tls-private-key-file={}", pki.serving_key.display()),
            &format!("--client-ca-file={}", pki.ca_cert.display()),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            &format!("--service-account-key-file={sa_pub}"),
            &format!("--service-account-signing-key-file={sa_key}"),
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]),
        &dir,
    )?);
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        kubeconfig_yaml(
            &server,
            &pki.ca_cert,
            &format!(
                "client-certificate: {}\n    client-key: {}",
                pki.admin_cert.display(),
                pki.admin_key.display()
            ),
            "admin",
        ),
    )?;
    let client = client_from(&kubeconfig).await?;
    wait_while_running("kube-apiserver /readyz", &mut processes, || async {
        client
            .request_text(http::Request::get("/readyz").body(vec![]).unwrap())
            .await
            .is_ok_and(|body| body.trim() == "ok")
    })
    .await?;

    // The controllers (Deployments, ReplicaSets, StatefulSets, garbage
    // collection, ServiceAccounts, namespaces, ...), the scheduler and kwok.
    let kubeconfig_arg = format!("--kubeconfig={}", kubeconfig.display());
    processes.push(Process::start(
        "kube-controller-manager",
        &bin.join("kube-controller-manager"),
        &strings(&[
            &kubeconfig_arg,
            // Endpoints and EndpointSlices refuse loopback addresses, and
            // kwok's pod IPs are loopback (see POD_CIDR): nothing here uses them.
            "--controllers=*,-endpoint,-endpointslice,-endpointslicemirroring",
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--use-service-account-credentials=false",
            &format!("--service-account-private-key-file={sa_key}"),
            &format!("--root-ca-file={}", pki.ca_cert.display()),
            "--allocate-node-cidrs=false",
            "--concurrent-gc-syncs=5",
            "--v=2",
        ]),
        &dir,
    )?);
    processes.push(Process::start(
        "kube-scheduler",
        &bin.join("kube-scheduler"),
        &strings(&[
            &kubeconfig_arg,
            "--kube-api-qps=100",
            "--kube-api-burst=200",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
            "--secure-port=0",
            "--v=1",
        ]),
        &dir,
    )?);
    let kwok_port = free_port();
    let mut kwok_args = strings(&[
        &kubeconfig_arg,
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        &format!("--cidr={POD_CIDR}"),
        "--node-ip=127.0.0.1",
        // Node heartbeats: without renewed Leases the node lifecycle
        // controller marks the nodes NotReady after its grace period.
        "--node-lease-duration-seconds=40",
        &format!("--server-address=127.0.0.1:{kwok_port}"),
    ]);
    if options.pods == Pods::Run {
        // kwok's own pod stages are replaced (its node stages stay).
        let stages = dir.join("kwok-pod-stages.yaml");
        std::fs::write(&stages, include_str!("kwok-pod-stages.yaml"))?;
        kwok_args.push(format!("--config={}", stages.display()));
    }
    processes.push(Process::start("kwok", &bin.join("kwok"), &kwok_args, &dir)?);

    let nodes: Api<Node> = Api::all(client.clone());
    for name in NODES {
        nodes
            .create(&PostParams::default(), &fake_node(name)?)
            .await?;
    }
    wait_while_running("kwok nodes Ready", &mut processes, || async {
        let Ok(list) = nodes.list(&Default::default()).await else {
            return false;
        };
        list.items.len() == NODES.len() && list.items.iter().all(node_ready)
    })
    .await?;
    // No storage provisioner runs here: a pool of pre-made volumes that the
    // real PersistentVolume controller binds to claims (managed Redis's
    // StatefulSet). kwok mounts nothing, so the host path is never used.
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for n in 0..PERSISTENT_VOLUMES {
        volumes
            .create(&PostParams::default(), &pool_volume(n)?)
            .await?;
    }
    // Pods can be created in a namespace once its default ServiceAccount exists.
    let service_accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> =
        Api::namespaced(client.clone(), "default");
    wait_while_running("the ServiceAccount controller", &mut processes, || async {
        service_accounts
            .get_opt("default")
            .await
            .ok()
            .flatten()
            .is_some()
    })
    .await?;

    Ok((
        ControlPlane {
            kubeconfig,
            server,
            ca_cert: pki.ca_cert,
            dir,
            bin,
        },
        processes,
    ))
}

/// A volume of the pool: no class, so it binds claims that name none.
fn pool_volume(n: usize) -> anyhow::Result<PersistentVolume> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("pool-{n}")},
        "spec": {
            "capacity": {"storage": "100Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "hostPath": {"path": format!("/nonexistent/chatscale-pool-{n}")},
        },
    }))?)
}

/// A Node that kwok manages: room for every test's pods, no taints.
fn fake_node(name: &str) -> anyhow::Result<Node> {
    Ok(serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
                "topology.kubernetes.io/zone": format!("zone-{}", &name[name.len() - 1..]),
            },
        },
        "status": {
            "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "256Gi", "pods": "110"},
        },
    }))?)
}

fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Polls `check` until it holds, failing early (with its log) when a process
/// has exited, and after two minutes.
async fn wait_while_running<F, Fut>(
    what: &str,
    processes: &mut [Process],
    mut check: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    loop {
        if check().await {
            return Ok(());
        }
        for process in processes.iter_mut() {
            if let Some(status) = process.exited() {
                bail!(
                    "{} exited ({status}) while waiting for {what}; its log ({}) ends:\n{}",
                    process.name,
                    process.log.display(),
                    process.log_tail(30)
                );
            }
        }
        if start.elapsed() > Duration::from_secs(120) {
            let tails: Vec<String> = processes
                .iter()
                .map(|p| format!("--- {} (pid {})\n{}", p.name, p.pid(), p.log_tail(15)))
                .collect();
            bail!("timed out waiting for {what}\n{}", tails.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_port(what: &str, port: u16, processes: &mut [Process]) -> anyhow::Result<()> {
    wait_while_running(what, processes, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await
}

static ETCD_DATA: OnceLock<PathBuf> = OnceLock::new();

/// etcd's data (most of a run's folder) goes when the test binary exits; the
/// logs stay for a look after a failure, until the next run removes them.
fn remove_etcd_data_at_exit(dir: &Path) {
    extern "C" fn remove() {
        if let Some(data) = ETCD_DATA.get() {
            let _ = std::fs::remove_dir_all(data);
        }
    }
    if ETCD_DATA.set(dir.join("etcd")).is_ok() {
        // SAFETY: registers a plain function; libtest exits through `exit`.
        unsafe { libc::atexit(remove) };
    }
}

/// Removes the folders of earlier runs whose test binary is gone.
fn remove_stale_runs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("chatscale-control-plane-")
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}
