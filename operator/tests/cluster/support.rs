//! What the control-plane tests share: the chart installed with the real
//! helm, the operator binary run as a local process under the chart's
//! ServiceAccount (a token from the TokenRequest API, so RBAC is the chart's),
//! examples moved into a test's namespace, and waits on API state.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use chatscale_tests::{
    cluster::{ControlPlane, die_with_parent, testenv_crds},
    free_port, workspace_root,
};

pub use chatscale_tests::cluster::event_reasons;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::{Api, Client};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// How long a test waits for the operator or the controllers to act.
pub const WAIT: Duration = Duration::from_secs(60);

/// The chart, relative to the workspace root (helm runs there).
pub const CHART: &str = "charts/chatscale-operator";

/// helm installs the chart's CRD on the first install; two installs at once
/// would race to create it.
static HELM: Mutex<()> = Mutex::new(());

pub fn plane() -> &'static ControlPlane {
    ControlPlane::shared()
}

/// `helm install RELEASE` of the chart into `namespace` with `extra` helm
/// arguments, waiting (2 minutes at most) until its pods are Ready; returns
/// helm's output.
pub fn helm_install(release: &str, namespace: &str, extra: &[&str]) -> anyhow::Result<String> {
    let mut args = vec![
        "install",
        release,
        CHART,
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        "2m",
    ];
    args.extend_from_slice(extra);
    let _one_at_a_time = HELM.lock().unwrap_or_else(|e| e.into_inner());
    plane().run_ok("helm", &args)
}

/// [`helm_install`] watching only `namespace`; returns the chart's ServiceAccount.
pub fn install_chart(release: &str, namespace: &str, extra: &[&str]) -> anyhow::Result<String> {
    let watch = format!("watchNamespace={namespace}");
    let mut args = vec!["--set", watch.as_str()];
    args.extend_from_slice(extra);
    helm_install(release, namespace, &args)?;
    Ok(service_account(release))
}

/// Creates the namespace `name` unless it exists (for the names examples and
/// chart values use).
pub async fn ensure_namespace(name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(plane().client().await?);
    let namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    match namespaces.create(&Default::default(), &namespace).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The chart's ServiceAccount (and object name) for a release.
pub fn service_account(release: &str) -> String {
    if release.contains("chatscale-operator") {
        release.to_owned()
    } else {
        format!("{release}-chatscale-operator")
    }
}

/// A kubeconfig that acts as `namespace/account`, with a token from the
/// TokenRequest API (`kubectl create token`).
pub fn kubeconfig_as(namespace: &str, account: &str) -> anyhow::Result<PathBuf> {
    let token = plane().run_ok(
        "kubectl",
        &[
            "create",
            "token",
            account,
            "--namespace",
            namespace,
            "--duration",
            "2h",
        ],
    )?;
    plane().kubeconfig_for_token(&format!("{namespace}-{account}"), token.trim())
}

/// A client that acts as `namespace/account`.
pub async fn client_as(namespace: &str, account: &str) -> anyhow::Result<Client> {
    chatscale_tests::cluster::client_from(&kubeconfig_as(namespace, account)?).await
}

/// The real `chatscale-operator run` as a local process; killed when dropped.
pub struct Operator {
    child: tokio::process::Child,
    logs: Arc<Mutex<String>>,
    pub identity: String,
}

impl Operator {
    /// Runs the operator with `kubeconfig`, watching `namespace` and electing
    /// its leader on a Lease in `lease_namespace`.
    pub fn start(
        kubeconfig: &std::path::Path,
        namespace: &str,
        lease_namespace: &str,
        identity: &str,
    ) -> anyhow::Result<Self> {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatscale-operator"));
        command
            .args([
                "run",
                "--http-address",
                &format!("127.0.0.1:{}", free_port()),
                "--lease-namespace",
                lease_namespace,
                "--identity",
                identity,
                "--watch-namespace",
                namespace,
            ])
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,chatscale_operator=debug")
            .env("POD_NAME", identity)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        die_with_parent(&mut command);
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(true)
            .spawn()
            .context("starting chatscale-operator")?;
        let logs = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = logs.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut logs = sink.lock().unwrap();
                logs.push_str(&line);
                logs.push('\n');
            }
        });
        Ok(Self {
            child,
            logs,
            identity: identity.to_owned(),
        })
    }

    /// Everything it has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// SIGKILL, as when its node dies: no Lease release, no goodbye.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        self.child.kill().await?;
        Ok(())
    }
}

/// A chart release in its own namespace and the operator running under its
/// ServiceAccount: what most tests start with.
pub struct Installed {
    pub namespace: String,
    pub operator: Operator,
    pub client: Client,
}

/// A namespace `prefix-N` with the chart installed for it and the operator running.
pub async fn installed(prefix: &str) -> anyhow::Result<Installed> {
    let namespace = plane().namespace(prefix).await?;
    let account = install_chart(&namespace, &namespace, &[])?;
    let kubeconfig = kubeconfig_as(&namespace, &account)?;
    let operator = Operator::start(
        &kubeconfig,
        &namespace,
        &namespace,
        &format!("{namespace}-0"),
    )?;
    Ok(Installed {
        client: plane().client().await?,
        namespace,
        operator,
    })
}

/// `examples/NAME.yaml` as JSON, moved into `namespace`.
pub fn example(name: &str, namespace: &str) -> anyhow::Result<Value> {
    let path = workspace_root().join(format!("examples/{name}.yaml"));
    let mut value: Value = serde_saphyr::from_str(&std::fs::read_to_string(&path)?)?;
    value["metadata"]["namespace"] = Value::String(namespace.to_owned());
    Ok(value)
}

/// The Secrets `examples/production.yaml` refers to (placeholders: nothing
/// connects to them here).
pub async fn production_secrets(client: &Client, ns: &str) -> anyhow::Result<()> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), ns);
    for (name, key, value) in [
        ("redis-cluster", "url", "redis://redis-cluster.invalid:6379"),
        ("openai", "api-key", "sk-test-not-a-real-key"),
        ("idp-jwks", "jwks.json", r#"{"keys":[]}"#),
    ] {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name},
            "stringData": BTreeMap::from([(key, value)]),
        }))?;
        secrets.create(&Default::default(), &secret).await?;
    }
    Ok(())
}

/// Writes `value` to a file kubectl can apply.
pub fn manifest_file(name: &str, value: &Value) -> anyhow::Result<PathBuf> {
    let path = plane().dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(value)?)?;
    Ok(path)
}

/// Installs (server-side, idempotent) the third-party CRDs `make testenv`
/// took from their projects' modules, named by file prefix, and waits until
/// they are served.
pub fn install_crds(prefix: &str) -> anyhow::Result<()> {
    let dir = testenv_crds();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("{}: run `make testenv`", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no {prefix}* CRDs in {}", dir.display());
    for file in &files {
        let file = file.display().to_string();
        plane().run_ok(
            "kubectl",
            &["apply", "--server-side", "--force-conflicts", "-f", &file],
        )?;
        plane().run_ok(
            "kubectl",
            &[
                "wait",
                "--for=condition=Established",
                "--timeout=60s",
                "-f",
                &file,
            ],
        )?;
    }
    Ok(())
}

/// Polls `check` (for at most [`WAIT`]) until it returns Some.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    chatscale_tests::wait_for(what, WAIT, || {
        let checked = check();
        async move { Ok(checked.await) }
    })
    .await
}

/// Makes sure the ChatCluster CRD is installed (by a release of the chart,
/// as users get it) for tests that need no operator.
pub fn ensure_chart_crd() -> anyhow::Result<()> {
    let _one_at_a_time = HELM.lock().unwrap_or_else(|e| e.into_inner());
    let crd = "crd/chatclusters.chatscale.dev";
    if plane().run("kubectl", &["get", crd])?.success {
        return Ok(());
    }
    plane().run_ok(
        "helm",
        &["install", "crd-only", CHART, "--namespace", "default"],
    )?;
    plane().run_ok(
        "kubectl",
        &["wait", "--for=condition=Established", "--timeout=60s", crd],
    )?;
    Ok(())
}
