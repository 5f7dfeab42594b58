//! A stand-in for the ingress-nginx controller: no Ingress controller runs
//! here, so a real nginx (Debian's `/usr/sbin/nginx`) is configured from one
//! Ingress as ingress-nginx would serve it: its backend Service's pods that
//! are Ready and not terminating are the upstreams (followed and reloaded
//! when they change), the Ingress's cookie-affinity annotations decide the
//! stickiness, and its timeouts and retries (`proxy-next-upstream`) apply.
//!
//! Affinity as ingress-nginx's `affinity: cookie` with `affinity-mode:
//! persistent`: a request without the cookie, or with one that names no
//! serving pod, goes round robin (ingress-nginx's default balancing) and gets
//! the cookie naming the pod that answered; a request with the cookie goes to
//! that pod. ingress-nginx stores a hash of the pod's address in the cookie,
//! this stand-in the address itself. It listens on 127.0.0.1, one port, any
//! Host header (the one Ingress rule's host is not checked). A request whose
//! cookie pins it to a pod is never retried on another one (ingress-nginx
//! re-pins it with `session-cookie-change-on-failure`): only new sessions are.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context, bail};
use k8s_openapi::api::{
    core::v1::{Pod, Service},
    networking::v1::Ingress,
};
use kube::{Api, Client, ResourceExt, api::ListParams};

use super::{hosts::serving, runner::launch::container_port};
use crate::free_port;

const NGINX: &str = "/usr/sbin/nginx";
const ANNOTATION: &str = "nginx.ingress.kubernetes.io/";
/// The words ingress-nginx accepts in `proxy-next-upstream`.
const NEXT_UPSTREAM: [&str; 12] = [
    "error",
    "timeout",
    "invalid_header",
    "http_500",
    "http_502",
    "http_503",
    "http_504",
    "http_403",
    "http_404",
    "http_429",
    "non_idempotent",
    "off",
];

/// A running stand-in; nginx stops when it is dropped.
pub struct IngressStandIn {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// One line per request: `remote_addr upstream_addr status "request"`.
    pub access_log: PathBuf,
    upstreams: tokio::sync::watch::Receiver<Vec<String>>,
    nginx: Arc<Nginx>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for IngressStandIn {
    fn drop(&mut self) {
        self.task.abort();
        // Now, not when the aborted task is dropped: a process that exits
        // right after would leave nginx's workers behind.
        self.nginx.stop();
    }
}

/// What the Ingress asks for.
#[derive(Clone, Debug, PartialEq)]
struct Route {
    service: String,
    service_port: ServicePort,
    cookie: Option<Cookie>,
    read_timeout: String,
    send_timeout: String,
    /// nginx's `proxy_next_upstream` words and `proxy_next_upstream_tries`.
    next_upstream: String,
    next_upstream_tries: u32,
}

#[derive(Clone, Debug, PartialEq)]
enum ServicePort {
    Number(i32),
    Name(String),
}

#[derive(Clone, Debug, PartialEq)]
struct Cookie {
    name: String,
    path: String,
    max_age: Option<String>,
    same_site: Option<String>,
}

impl IngressStandIn {
    /// Starts nginx for the Ingress `namespace/name` once it exists, with
    /// its files in `dir`.
    pub async fn start(
        client: Client,
        namespace: &str,
        name: &str,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        if !Path::new(NGINX).exists() {
            bail!("{NGINX} is missing: apt-get install nginx-light (make test does)");
        }
        std::fs::create_dir_all(dir)?;
        let ingresses: Api<Ingress> = Api::namespaced(client.clone(), namespace);
        let ingress = ingresses
            .get(name)
            .await
            .with_context(|| format!("Ingress {namespace}/{name}"))?;
        let route = route(&ingress)?;
        let port = free_port();
        let access_log = dir.join("access.log");
        let nginx = Arc::new(Nginx::start(dir, port, &route)?);
        let url = format!("http://127.0.0.1:{port}");
        let waited = crate::wait_until(
            "the ingress stand-in to listen",
            Duration::from_secs(10),
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
            },
        )
        .await;
        waited.with_context(|| nginx.error_log())?;
        let services: Api<Service> = Api::namespaced(client.clone(), namespace);
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let (published, upstreams) = tokio::sync::watch::channel(Vec::new());
        let reloads = nginx.clone();
        let task = tokio::spawn(async move {
            let nginx = reloads;
            let mut upstreams: Vec<String> = Vec::new();
            loop {
                match serving_upstreams(&services, &pods, &route).await {
                    Ok(now) if now != upstreams => {
                        if nginx.write(&route, &now).is_ok() && nginx.reload().await.is_ok() {
                            upstreams = now;
                            published.send_replace(upstreams.clone());
                        }
                    }
                    Ok(_) => {}
                    Err(error) => eprintln!("ingress stand-in: {error:#}"),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Ok(Self {
            url,
            access_log,
            upstreams,
            nginx,
            task,
        })
    }

    /// The pods (`IP:PORT`) nginx routes to now.
    pub fn upstreams(&self) -> Vec<String> {
        self.upstreams.borrow().clone()
    }
}

/// The route of the Ingress's first rule and path, and its annotations.
fn route(ingress: &Ingress) -> anyhow::Result<Route> {
    let backend = ingress
        .spec
        .as_ref()
        .and_then(|s| s.rules.as_ref()?.first()?.http.as_ref()?.paths.first())
        .and_then(|p| p.backend.service.as_ref())
        .context("the Ingress has no rule with a Service backend")?;
    let port = backend.port.as_ref().context("the backend has no port")?;
    let service_port = match (&port.number, &port.name) {
        (Some(n), _) => ServicePort::Number(*n),
        (None, Some(name)) => ServicePort::Name(name.clone()),
        _ => bail!("the backend port has neither number nor name"),
    };
    let annotations = ingress.annotations();
    let get = |key: &str| annotations.get(&format!("{ANNOTATION}{key}")).cloned();
    let cookie = (get("affinity").as_deref() == Some("cookie")).then(|| Cookie {
        // ingress-nginx's defaults when a key is unset.
        name: get("session-cookie-name").unwrap_or_else(|| "INGRESSCOOKIE".into()),
        path: get("session-cookie-path").unwrap_or_else(|| "/".into()),
        max_age: get("session-cookie-max-age"),
        same_site: get("session-cookie-samesite"),
    });
    let seconds = |key: &str| format!("{}s", get(key).unwrap_or_else(|| "60".into()));
    // ingress-nginx's ConfigMap defaults, and its validators (docs/routing.md R2.5).
    let next_upstream = get("proxy-next-upstream").unwrap_or_else(|| "error timeout".into());
    if next_upstream
        .split_whitespace()
        .any(|word| !NEXT_UPSTREAM.contains(&word))
    {
        bail!("proxy-next-upstream {next_upstream:?} is not a list of {NEXT_UPSTREAM:?}");
    }
    let next_upstream_tries = match get("proxy-next-upstream-tries") {
        None => 3,
        Some(tries) => tries
            .parse()
            .with_context(|| format!("proxy-next-upstream-tries {tries:?}"))?,
    };
    Ok(Route {
        service: backend.name.clone(),
        service_port,
        cookie,
        read_timeout: seconds("proxy-read-timeout"),
        send_timeout: seconds("proxy-send-timeout"),
        next_upstream,
        next_upstream_tries,
    })
}

/// `IP:PORT` of each serving pod of the route's Service, sorted.
async fn serving_upstreams(
    services: &Api<Service>,
    pods: &Api<Pod>,
    route: &Route,
) -> anyhow::Result<Vec<String>> {
    let Some(service) = services.get_opt(&route.service).await? else {
        return Ok(Vec::new());
    };
    let spec = service.spec.unwrap_or_default();
    let selector: BTreeMap<String, String> = spec.selector.unwrap_or_default();
    let port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| match &route.service_port {
            ServicePort::Number(n) => p.port == *n,
            ServicePort::Name(name) => p.name.as_deref() == Some(name),
        })
        .context("the Service has no such port")?;
    let target = port
        .target_port
        .clone()
        .unwrap_or(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port.port));
    let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let list = pods
        .list(&ListParams::default().labels(&labels.join(",")))
        .await?;
    let mut upstreams: Vec<String> = list
        .items
        .iter()
        .filter(|p| serving(p))
        .filter_map(|p| {
            let ip = p.status.as_ref()?.pod_ip.clone()?;
            let port = p
                .spec
                .as_ref()?
                .containers
                .iter()
                .find_map(|c| container_port(c, &target).ok())?;
            Some(format!("{ip}:{port}"))
        })
        .collect();
    upstreams.sort();
    Ok(upstreams)
}

/// nginx with its files in one folder.
struct Nginx {
    dir: PathBuf,
    port: u16,
    master: Mutex<Option<std::process::Child>>,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Nginx {
    /// Writes the config for no upstreams yet and starts nginx.
    fn start(dir: &Path, port: u16, route: &Route) -> anyhow::Result<Self> {
        let nginx = Self {
            dir: dir.to_owned(),
            port,
            master: Mutex::new(None),
        };
        nginx.write(route, &[])?;
        let mut command = std::process::Command::new(NGINX);
        command
            .args(["-p", &dir.display().to_string(), "-c"])
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let master = super::spawn_durable(command).context("starting nginx")?;
        *nginx.master.lock().unwrap() = Some(master);
        Ok(nginx)
    }

    /// SIGTERM to the master stops its workers too (a SIGKILLed master would
    /// leave them behind, holding WebSockets).
    fn stop(&self) {
        if let Some(mut master) = self.master.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // SAFETY: signals the nginx master this stand-in started and has not reaped.
            unsafe { libc::kill(master.id() as i32, libc::SIGTERM) };
            let _ = master.wait();
        }
    }

    fn pid(&self) -> Option<i32> {
        let master = self.master.lock().unwrap_or_else(|e| e.into_inner());
        master.as_ref().map(|m| m.id() as i32)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }

    /// A graceful reload: new workers take new connections, old ones finish
    /// theirs. Returns once the old worker (there is one: `worker_processes
    /// 1`, with room for 16384 connections) has stopped accepting (it logs
    /// "gracefully shutting down" then), so that no new connection meets the
    /// old upstreams.
    async fn reload(&self) -> anyhow::Result<()> {
        let pid = self.pid().context("nginx is not running")?;
        let retired = |log: &str| log.matches("gracefully shutting down").count();
        let before = retired(&self.error_log());
        // SAFETY: signals the nginx master this stand-in started.
        if unsafe { libc::kill(pid, libc::SIGHUP) } != 0 {
            bail!("nginx is gone: {}", self.error_log());
        }
        crate::wait_until(
            "nginx to retire its old worker",
            Duration::from_secs(10),
            || async { retired(&self.error_log()) > before },
        )
        .await
        .map(|_| ())
    }

    fn write(&self, route: &Route, upstreams: &[String]) -> anyhow::Result<()> {
        std::fs::write(
            self.dir.join("nginx.conf"),
            config(&self.dir, self.port, route, upstreams),
        )?;
        Ok(())
    }
}

/// The whole nginx.conf for `upstreams`.
fn config(dir: &Path, port: u16, route: &Route, upstreams: &[String]) -> String {
    let p = |name: &str| dir.join(name).display().to_string();
    let servers = if upstreams.is_empty() {
        // No pod serves: every request gets 502, as from ingress-nginx.
        "        server 127.0.0.1:1 down;\n".to_owned()
    } else {
        upstreams
            .iter()
            .map(|u| format!("        server {u} max_fails=0;\n"))
            .collect()
    };
    let (target, affinity) = match &route.cookie {
        Some(cookie) => {
            let name = regex_escape(&cookie.name);
            // `$cookie_NAME` cannot name a cookie with `-` in it: match the header.
            let pinned: String = upstreams
                .iter()
                .map(|u| {
                    format!(
                        "        \"~(^|;\\s*){name}={}(;|$)\" {u};\n",
                        regex_escape(u)
                    )
                })
                .collect();
            let mut attributes = format!("Path={}", cookie.path);
            if let Some(age) = &cookie.max_age {
                attributes.push_str(&format!("; Max-Age={age}"));
            }
            if let Some(same_site) = &cookie.same_site {
                attributes.push_str(&format!("; SameSite={same_site}"));
            }
            (
                "$chat_pinned",
                format!(
                    "    map $http_cookie $chat_pinned {{\n{pinned}        default chat_pool;\n    }}\n    \
                     # After a failed try $upstream_addr lists every upstream tried: the last one answered.\n    \
                     map $upstream_addr $chat_answered {{\n        \"~(?<last>[^, ]+)$\" $last;\n    }}\n    \
                     map $chat_pinned $chat_set_cookie {{\n        chat_pool \"{cookie}=$chat_answered; {attributes}; HttpOnly\";\n        \
                     default \"\";\n    }}\n",
                    cookie = cookie.name,
                ),
            )
        }
        None => ("chat_pool", String::new()),
    };
    let set_cookie = if route.cookie.is_some() {
        "            add_header Set-Cookie $chat_set_cookie;\n"
    } else {
        ""
    };
    format!(
        "# Written by tests/src/cluster/ingress.rs: the Ingress as ingress-nginx would serve it.\n\
         daemon off;\nuser root;\nworker_processes 1;\nworker_rlimit_nofile 65536;\npid {pid};\nerror_log {error} notice;\n\
         worker_shutdown_timeout 240s;\n\
         events {{\n    worker_connections 16384;\n}}\n\
         http {{\n    log_format chatscale_test '$remote_addr $upstream_addr $status \"$request\"';\n    \
         access_log {access} chatscale_test;\n    client_body_temp_path {body};\n    proxy_temp_path {proxy};\n    \
         fastcgi_temp_path {fastcgi};\n    uwsgi_temp_path {uwsgi};\n    scgi_temp_path {scgi};\n    \
         map $http_upgrade $connection_upgrade {{\n        default upgrade;\n        '' close;\n    }}\n    \
         upstream chat_pool {{\n{servers}    }}\n{affinity}    \
         server {{\n        listen 127.0.0.1:{port};\n        client_max_body_size 1m;\n        \
         location / {{\n            proxy_pass http://{target};\n{set_cookie}            \
         proxy_http_version 1.1;\n            proxy_set_header Upgrade $http_upgrade;\n            \
         proxy_set_header Connection $connection_upgrade;\n            proxy_set_header Host $host;\n            \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n            \
         proxy_read_timeout {read};\n            proxy_send_timeout {send};\n            \
         proxy_buffering off;\n            proxy_request_buffering off;\n            \
         proxy_next_upstream {next_upstream};\n            proxy_next_upstream_tries {tries};\n        }}\n    }}\n}}\n",
        pid = p("nginx.pid"),
        error = p("error.log"),
        access = p("access.log"),
        body = p("client_body"),
        proxy = p("proxy"),
        fastcgi = p("fastcgi"),
        uwsgi = p("uwsgi"),
        scgi = p("scgi"),
        read = route.read_timeout,
        send = route.send_timeout,
        next_upstream = route.next_upstream,
        tries = route.next_upstream_tries,
    )
}

/// `text` with the characters a PCRE pattern treats specially escaped.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = r"\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operators_annotations_become_cookie_affinity() {
        let ingress: Ingress = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "team", "annotations": {
                "nginx.ingress.kubernetes.io/affinity": "cookie",
                "nginx.ingress.kubernetes.io/session-cookie-name": "chatscale-affinity",
                "nginx.ingress.kubernetes.io/session-cookie-max-age": "86400",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
                "nginx.ingress.kubernetes.io/proxy-next-upstream": "error timeout http_503",
            }},
            "spec": {"rules": [{"host": "chat.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "team", "port": {"name": "http"}}}}]}}]},
        }))
        .unwrap();
        let route = route(&ingress).unwrap();
        assert_eq!(route.service_port, ServicePort::Name("http".into()));
        assert_eq!(route.read_timeout, "3600s");
        let text = config(
            Path::new("/tmp/x"),
            8080,
            &route,
            &["127.64.0.3:3000".into()],
        );
        assert!(
            text.contains(
                r#""~(^|;\s*)chatscale-affinity=127\.64\.0\.3:3000(;|$)" 127.64.0.3:3000;"#
            ),
            "{text}"
        );
        assert!(
            text.contains("chatscale-affinity=$chat_answered; Path=/; Max-Age=86400"),
            "{text}"
        );
        assert!(text.contains("proxy_pass http://$chat_pinned;"), "{text}");
        assert!(
            text.contains("proxy_next_upstream error timeout http_503;\n            proxy_next_upstream_tries 3;"),
            "{text}"
        );
    }

    #[test]
    fn retries_default_to_ingress_nginx_s_and_refuse_what_it_refuses() {
        let ingress = |annotations: serde_json::Value| -> Ingress {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "team", "annotations": annotations},
                "spec": {"rules": [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                    "backend": {"service": {"name": "team", "port": {"number": 80}}}}]}}]},
            }))
            .unwrap()
        };
        let plain = route(&ingress(serde_json::json!({}))).unwrap();
        assert_eq!(
            (plain.next_upstream.as_str(), plain.next_upstream_tries),
            ("error timeout", 3)
        );
        for bad in [
            serde_json::json!({"nginx.ingress.kubernetes.io/proxy-next-upstream": "error; return 200"}),
            serde_json::json!({"nginx.ingress.kubernetes.io/proxy-next-upstream-tries": "three"}),
        ] {
            assert!(route(&ingress(bad.clone())).is_err(), "{bad}");
        }
    }
}
