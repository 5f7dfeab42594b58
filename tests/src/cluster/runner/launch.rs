//! How one container of a pod becomes a local command: which program stands
//! for its image, and how the command line and environment are mapped from
//! the pod's view of the world (its volumes at their mount paths, its own
//! network namespace where `0.0.0.0` and `127.0.0.1` are the pod itself) to
//! this machine's (folders, and the pod's loopback IP). Pure: the API lookups
//! happen in `env.rs` and `volumes.rs`.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Container;

/// What runs for each image, by image name (the last segment of its
/// repository: `ghcr.io/chatscale/chat-server:0.1.0` is `chat-server`).
#[derive(Clone, Debug, Default)]
pub struct Programs(BTreeMap<String, Program>);

/// How one image runs here.
#[derive(Clone, Debug)]
pub struct Program {
    /// A local binary that stands for the image's entrypoint; `None` runs the
    /// container's own `command` with this machine's tools (`sh`, Debian's
    /// `redis-server`).
    pub entrypoint: Option<PathBuf>,
    /// Replacements in the command line and in exec probes (`{ip}` is the
    /// pod IP), for programs whose defaults assume a network namespace of
    /// their own.
    pub rewrites: Vec<(String, String)>,
}

impl Programs {
    /// The image runs as the local `binary`, with the container's args.
    pub fn binary(mut self, image: &str, binary: impl Into<PathBuf>) -> Self {
        let program = Program {
            entrypoint: Some(binary.into()),
            rewrites: Vec::new(),
        };
        self.0.insert(image.to_owned(), program);
        self
    }

    /// The image's container `command` runs as written, with `rewrites`.
    pub fn command(mut self, image: &str, rewrites: &[(&str, &str)]) -> Self {
        let program = Program {
            entrypoint: None,
            rewrites: rewrites
                .iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect(),
        };
        self.0.insert(image.to_owned(), program);
        self
    }

    /// chatscale's pods: chat-server and the operator as the workspace's
    /// binaries, and managed Redis through the operator's own start script
    /// and readiness probe with Debian's `redis-server` and `redis-cli`. In a
    /// pod, Redis listens on every address of the pod's network namespace and
    /// `redis-cli` dials the pod's own 127.0.0.1; here both are the pod IP.
    pub fn chatscale(chat_server: &Path, operator: &Path) -> Self {
        Self::default()
            .binary("chat-server", chat_server)
            .binary("chatscale-operator", operator)
            .command(
                "redis",
                &[
                    ("redis-server -", "redis-server - --bind {ip}"),
                    ("redis-cli ", "redis-cli -h {ip} "),
                ],
            )
    }

    /// The program for `image`, if this runner knows it.
    pub fn for_image(&self, image: &str) -> Option<&Program> {
        self.0.get(image_name(image))
    }
}

/// `registry/path/NAME:tag@sha256:...` to `NAME`.
pub fn image_name(image: &str) -> &str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split(':').next().unwrap_or(last)
}

/// The pod's view mapped onto this machine.
#[derive(Clone, Debug)]
pub struct Mapping {
    pub pod_ip: String,
    /// Mount path in the pod, folder here.
    pub mounts: Vec<(String, PathBuf)>,
    /// The program's rewrites with `{ip}` filled in.
    pub rewrites: Vec<(String, String)>,
}

impl Mapping {
    pub fn new(pod_ip: &str, mut mounts: Vec<(String, PathBuf)>, program: &Program) -> Self {
        // The longest mount path first, so a nested mount wins.
        mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        Self {
            pod_ip: pod_ip.to_owned(),
            mounts,
            rewrites: program
                .rewrites
                .iter()
                .map(|(from, to)| (from.clone(), to.replace("{ip}", pod_ip)))
                .collect(),
        }
    }

    /// `text` as seen from here: mount paths become folders, the pod's
    /// "every address" becomes its IP, then the program's rewrites.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.replace("0.0.0.0", &self.pod_ip);
        for (mount, folder) in &self.mounts {
            out = replace_path(&out, mount, &folder.display().to_string());
        }
        for (from, to) in &self.rewrites {
            out = out.replace(from, to);
        }
        out
    }
}

/// Replaces `path` where it is a whole path or a path's leading folders
/// (`/data` in `/data/x` and `--dir /data`, not in `/database`).
fn replace_path(text: &str, path: &str, with: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(path) {
        let after = &rest[at + path.len()..];
        let whole = after
            .chars()
            .next()
            .is_none_or(|c| !(c.is_alphanumeric() || "-_.".contains(c)));
        out.push_str(&rest[..at]);
        out.push_str(if whole { with } else { path });
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Expands `$(NAME)` with the container's variables as the kubelet does
/// (`$$` is a literal `$`; an unknown name stays as written).
pub fn expand(text: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(value) = vars.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// One container as a local command.
#[derive(Clone, Debug, PartialEq)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// The command for `container`, with its resolved environment `env` (in
/// order, already expanded).
pub fn launch(
    container: &Container,
    program: &Program,
    env: Vec<(String, String)>,
    mapping: &Mapping,
) -> anyhow::Result<Launch> {
    let vars: BTreeMap<String, String> = env.iter().cloned().collect();
    let map = |s: &String| mapping.apply(&expand(s, &vars));
    let command: Vec<String> = container.command.iter().flatten().map(map).collect();
    let args: Vec<String> = container.args.iter().flatten().map(map).collect();
    let (program, args) = match (&program.entrypoint, command.split_first()) {
        // The image's binary, whether the pod names it or relies on the entrypoint.
        (Some(binary), Some((_, rest))) => (binary.clone(), [rest, &args].concat()),
        (Some(binary), None) => (binary.clone(), args),
        (None, Some((first, rest))) => (PathBuf::from(first), [rest, &args].concat()),
        (None, None) => bail!(
            "container {} has no command, and no local binary stands for its image",
            container.name
        ),
    };
    let env = env
        .into_iter()
        .map(|(name, value)| (name, mapping.apply(&value)))
        .collect();
    Ok(Launch { program, args, env })
}

/// A container's port number by name or number (probes name them).
pub fn container_port(
    container: &Container,
    port: &k8s_openapi::apimachinery::pkg::util::intstr::IntOrString,
) -> anyhow::Result<u16> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name))
            .map(|p| p.container_port)
            .with_context(|| format!("container {} has no port named {name}", container.name))?,
    };
    u16::try_from(number).with_context(|| format!("port {number} out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> Mapping {
        let redis = Programs::chatscale(Path::new("/bin/chat"), Path::new("/bin/op"));
        Mapping::new(
            "127.64.0.7",
            vec![
                ("/data".into(), PathBuf::from("/tmp/p/data")),
                ("/etc/redis-auth".into(), PathBuf::from("/tmp/p/auth")),
            ],
            redis.for_image("redis:7.4").unwrap(),
        )
    }

    #[test]
    fn image_names() {
        assert_eq!(
            image_name("ghcr.io/chatscale/chat-server:0.1.0"),
            "chat-server"
        );
        assert_eq!(image_name("redis:7.4-alpine"), "redis");
        assert_eq!(image_name("docker.io/library/redis@sha256:abc"), "redis");
        assert_eq!(image_name("localhost:5000/x/op:1@sha256:abc"), "op");
    }

    #[test]
    fn paths_addresses_and_rewrites_are_mapped() {
        let m = mapping();
        assert_eq!(
            m.apply(
                "exec redis-server - --dir /data <<EOF\nrequirepass $(cat /etc/redis-auth/password)"
            ),
            "exec redis-server - --bind 127.64.0.7 --dir /tmp/p/data <<EOF\nrequirepass $(cat /tmp/p/auth/password)"
        );
        assert_eq!(m.apply("/database /data"), "/database /tmp/p/data");
        assert_eq!(
            m.apply("--http-address=0.0.0.0:8080"),
            "--http-address=127.64.0.7:8080"
        );
        assert_eq!(m.apply("redis-cli ping"), "redis-cli -h 127.64.0.7 ping");
    }

    #[test]
    fn variables_expand_like_the_kubelet() {
        let vars = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        assert_eq!(expand("x$(A)y $(B) $$(A) $", &vars), "x1y $(B) $(A) $");
    }

    #[test]
    fn the_entrypoint_binary_stands_for_the_image() {
        let container: Container = serde_json::from_value(serde_json::json!({
            "name": "operator", "args": ["run", "--http-address=0.0.0.0:8080", "--id=$(POD_NAME)"],
        }))
        .unwrap();
        let programs = Programs::chatscale(Path::new("/bin/chat"), Path::new("/bin/op"));
        let program = programs
            .for_image("ghcr.io/chatscale/chatscale-operator:1")
            .unwrap();
        let m = Mapping::new("127.64.0.9", Vec::new(), program);
        let env = vec![("POD_NAME".to_owned(), "op-1".to_owned())];
        let launched = launch(&container, program, env.clone(), &m).unwrap();
        assert_eq!(
            launched,
            Launch {
                program: "/bin/op".into(),
                args: vec![
                    "run".into(),
                    "--http-address=127.64.0.9:8080".into(),
                    "--id=op-1".into()
                ],
                env,
            }
        );
    }
}
