//! Secrets stay secret: the generated Redis password and admin token, and a
//! user's JWT key, appear in their Secrets and nowhere else the operator
//! writes: not in the ChatCluster's status, not in Events, not in any other
//! object (pods get them as mounted files), not in the operator's logs (at
//! debug level). The real controller runs against the in-memory API.

use std::{
    collections::BTreeMap,
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use chatscale_operator::{
    api::ChatCluster,
    controller::{self, Context},
};
use chatscale_tests::fake_kube::{FakeKube, res};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, api::PostParams};
use serde_json::Value;

const NS: &str = "chat";
const JWT_SECRET: &str = "user-jwt-secret-0123456789abcdef-0123456789";

/// Every log line the operator writes, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn string_data(kube: &FakeKube, name: &str, key: &str) -> Option<String> {
    kube.get(&res::<Secret>(), NS, name)?["stringData"][key]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_and_user_secrets_stay_in_their_secrets() -> anyhow::Result<()> {
    let logs = Captured::default();
    let writer = logs.clone();
    // Global: the controller logs from the runtime's worker threads. This
    // file holds one test, so the process has one subscriber.
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_writer(move || writer.clone())
            .finish(),
    )?;
    let kube = FakeKube::start().await;
    let client = kube.client();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: kube::api::ObjectMeta {
                    name: Some("chat-jwt".into()),
                    namespace: Some(NS.into()),
                    ..Default::default()
                },
                string_data: Some(BTreeMap::from([("hs256".into(), JWT_SECRET.into())])),
                ..Default::default()
            },
        )
        .await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = tokio::spawn(controller::run(
        client.clone(),
        Arc::new(Context::new(client.clone())),
        async move {
            let _ = stopped.await;
        },
    ));

    let manifest = format!(
        "{}\n  auth: {{jwtSecretRef: {{name: chat-jwt, key: hs256}}, audience: chat}}\n",
        std::fs::read_to_string(format!(
            "{}/../examples/minimal.yaml",
            env!("CARGO_MANIFEST_DIR")
        ))?
        .trim_end()
    );
    let cc: ChatCluster = serde_saphyr::from_str(&manifest)?;
    Api::<ChatCluster>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &cc)
        .await?;
    kube.wait_for(
        |k| {
            k.get(&res::<ChatCluster>(), NS, "team-chat")
                .is_some_and(|cc| cc["status"]["observedGeneration"] == 1)
                && string_data(k, "team-chat-admin", "token").is_some()
                && string_data(k, "team-chat-redis-auth", "password").is_some()
        },
        Duration::from_secs(15),
    )
    .await?;
    let password = string_data(&kube, "team-chat-redis-auth", "password").unwrap();
    let token = string_data(&kube, "team-chat-admin", "token").unwrap();
    assert!(password.len() >= 32 && token.len() >= 32);

    let secrets_of_ours = ["team-chat-redis-auth", "team-chat-admin", "chat-jwt"];
    let mut seen_events = 0;
    for object in kube.objects() {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        if kind == "Secret" && secrets_of_ours.contains(&name) {
            continue;
        }
        seen_events += usize::from(kind == "Event");
        let text = object.to_string();
        for secret in [password.as_str(), token.as_str(), JWT_SECRET] {
            assert!(!text.contains(secret), "a secret in {kind} {name}");
        }
    }
    assert!(seen_events > 0, "Events were written (and checked)");
    let cc = kube.get(&res::<ChatCluster>(), NS, "team-chat").unwrap();
    assert!(
        cc["status"] != Value::Null,
        "the status was written (and checked)"
    );

    let _ = stop.send(());
    runner.await?;
    let logs = String::from_utf8(logs.0.lock().unwrap().clone())?;
    assert!(
        logs.contains("chatscale_operator"),
        "the controller's logs were captured:\n{logs}"
    );
    for secret in [password.as_str(), token.as_str(), JWT_SECRET] {
        assert!(!logs.contains(secret), "a secret in the operator's logs");
    }
    Ok(())
}
