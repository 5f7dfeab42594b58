//! The chat-server pods' environment is a contract between the operator and
//! the chat-server binary: every `CHAT_*` variable the operator writes must be
//! one the binary reads (a misspelt name would be ignored in silence), and the
//! values must be ones it accepts (or the pods would crash-loop). The names
//! come from the contract crate; the values are checked against the real
//! binary with a ChatCluster that sets every option.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use chatscale_contract as contract;
use chatscale_operator::{
    api::ChatCluster,
    resources::{Generated, chat},
};
use chatscale_tests::{chat_server_bin, free_port};
use k8s_openapi::api::{apps::v1::Deployment, core::v1::EnvVar};

const EVERYTHING: &str = r#"
apiVersion: chatscale.dev/v1alpha1
kind: ChatCluster
metadata: {name: full, namespace: apps, uid: "1234"}
spec:
  routing: {host: chat.example.com}
  drain: {timeoutSeconds: 120, rate: 250}
  ai: {provider: anthropic, model: claude-sonnet-4-5, maxTokens: 2048, apiKeySecretRef: {name: anthropic, key: apiKey}}
  auth: {jwtSecretRef: {name: jwt, key: hs256}, issuer: https://idp.example, audience: chat, roomsClaim: chat_rooms, allowedOrigins: ["https://app.example"]}
  limits: {eventsPerSec: 50, eventsBurst: 100, userEventsPerSec: 80, floodDisconnectAfter: 20, maxAiAnswersPerUser: 2, maxAiAnswersPerRoom: 3, maxRoomsPerSocket: 10, connectionsPerMinutePerIp: 120, trustedProxies: [10.0.0.0/8, "fd00::/8", 192.168.1.1]}
"#;

fn chat_env() -> Vec<EnvVar> {
    let cc: ChatCluster = serde_saphyr::from_str(EVERYTHING).unwrap();
    cc.validate_cel().unwrap();
    let generated = Generated {
        redis_password: "pw".into(),
        admin_token: "token".into(),
    };
    let objects = chat::objects(&cc, &generated).unwrap();
    let deployment: Deployment = objects
        .into_iter()
        .find_map(|o| o.try_parse().ok())
        .expect("a Deployment");
    let mut pod = deployment.spec.unwrap().template.spec.unwrap();
    pod.containers.remove(0).env.unwrap()
}

#[test]
fn every_variable_the_operator_writes_is_one_chat_server_reads() {
    // The contract's names are the ones chat-server's flags read (its config
    // tests check that); the operator writes them through the same constants,
    // and never a secret's variable (secrets reach the pods as files).
    let env = chat_env();
    for var in &env {
        assert!(
            contract::env::ALL.contains(&var.name.as_str()),
            "{} is not in the contract",
            var.name
        );
        assert!(
            !contract::env::WITHOUT_FLAG.contains(&var.name.as_str()),
            "{} carries a secret as a literal value",
            var.name
        );
    }
    for expected in [
        "CHAT_EVENTS_PER_SEC",
        "CHAT_MAX_ROOMS_PER_SOCKET",
        "CHAT_ANTHROPIC_MAX_TOKENS",
        "CHAT_ANTHROPIC_MODEL",
        "CHAT_TRUSTED_PROXIES",
    ] {
        assert!(
            env.iter().any(|v| v.name == expected),
            "{expected} not written"
        );
    }
}

#[test]
fn chat_server_starts_with_the_values_the_operator_writes() {
    // The files behind `*_FILE` exist only in the pod; the server here runs
    // without them (in-memory store, auth off) and on free ports.
    let plain: Vec<(String, String)> = chat_env()
        .into_iter()
        .filter(|v| !v.name.ends_with("_FILE") && !v.name.ends_with("_PORT"))
        .filter(|v| v.name != "CHAT_AUTH")
        .filter_map(|v| Some((v.name, v.value?)))
        .collect();
    let mut child = Command::new(chat_server_bin())
        .env_clear()
        .envs(plain.iter().cloned())
        .args(["--host", "127.0.0.1"])
        .args(["--port", &free_port().to_string()])
        .args(["--admin-port", &free_port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    let _ = child.kill();
    let output = child.wait_with_output().unwrap();
    assert!(
        first.starts_with("chat-server listening on"),
        "chat-server refused the operator's values {plain:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
