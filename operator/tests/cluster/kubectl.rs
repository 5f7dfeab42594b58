//! What users type, with the real kubectl against the real API server:
//! `kubectl apply -f` of every example is accepted; every invalid example is
//! refused by the API server itself (OpenAPI schema and CEL rules from the
//! CRD), and so is a change of `redis.managed.storage` (a transition rule);
//! `kubectl explain` shows the field docs; `kubectl get` the printer columns;
//! `kubectl scale` goes through the scale subresource to the Deployment.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;

use crate::support::{
    Installed, ensure_namespace, eventually, example, installed, manifest_file, plane,
};

fn yaml_files(dir: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(chatscale_tests::workspace_root().join(dir))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .map(|p| format!("{dir}/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_applies_the_examples_and_the_api_server_refuses_the_invalid_ones()
-> anyhow::Result<()> {
    crate::support::ensure_chart_crd()?;
    // The examples name their own namespaces.
    for name in ["chat", "chat-prod", "chat-manual"] {
        ensure_namespace(name).await?;
    }
    let examples = yaml_files("examples");
    assert_eq!(examples.len(), 3, "{examples:?}");
    for file in &examples {
        let out = plane().run_ok("kubectl", &["apply", "-f", file])?;
        assert!(
            out.contains("created") || out.contains("configured"),
            "{file}: {out}"
        );
    }

    let expected = [
        (
            "both-redis-modes.yaml",
            "exactly one of redis.managed and redis.external",
        ),
        (
            "drain-timeout-too-long.yaml",
            "drain.timeoutSeconds must be 1..3600",
        ),
        (
            "host-too-long.yaml",
            "spec.routing.host: Too long: may not be more than 253 bytes",
        ),
        (
            "ingress-and-gateway.yaml",
            "at most one of routing.ingress and routing.gateway",
        ),
        ("min-above-max.yaml", "1 <= minReplicas <= maxReplicas"),
        (
            "name-too-long.yaml",
            "ChatCluster names are at most 46 characters",
        ),
        (
            "rebalance-rate-zero.yaml",
            "rebalance.connectionsPerSecond must be 1..10000",
        ),
        (
            "wrong-type.yaml",
            "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer",
        ),
    ];
    let invalid = yaml_files("examples/invalid");
    assert_eq!(
        invalid.len(),
        expected.len(),
        "every invalid example has an expected message"
    );
    for (file, (name, message)) in invalid.iter().zip(expected) {
        assert!(file.ends_with(name), "{file} vs {name}");
        let out = plane().run("kubectl", &["apply", "-f", file])?;
        assert!(!out.success, "{file} was accepted");
        assert!(out.stderr.contains(message), "{file}: {}", out.stderr);
        assert!(out.stderr.contains("is invalid"), "{file}: {}", out.stderr);
    }
    let listed = plane().run_ok(
        "kubectl",
        &["get", "chatclusters", "-n", "chat", "-o", "name"],
    )?;
    assert_eq!(
        listed.trim(),
        "chatcluster.chatscale.dev/team-chat",
        "no invalid cluster was stored"
    );

    // redis.managed.storage cannot change after creation.
    let out = plane().run(
        "kubectl",
        &[
            "patch",
            "chatcluster",
            "team-chat",
            "-n",
            "chat",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"redis":{"managed":{"storage":"50Gi"}}}}"#,
        ],
    )?;
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("redis.managed.storage cannot change after creation"),
        "{}",
        out.stderr
    );

    let explain = plane().run_ok("kubectl", &["explain", "chatcluster.spec.autoscaling"])?;
    for text in [
        "targetConnectionsPerPod",
        "minReplicas",
        "maxReplicas",
        "DESCRIPTION",
    ] {
        assert!(
            explain.contains(text),
            "kubectl explain lacks {text}:\n{explain}"
        );
    }
    let table = plane().run_ok("kubectl", &["get", "chatclusters", "-n", "chat"])?;
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "READY",
            "CONNECTIONS",
            "REDIS",
            "OPS/S",
            "AGE"
        ],
        "{table}"
    );
    assert!(table.contains("team-chat"), "{table}");

    for file in &examples {
        plane().run_ok("kubectl", &["delete", "-f", file, "--wait=true"])?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_scale_reaches_the_deployment_through_the_scale_subresource() -> anyhow::Result<()>
{
    let Installed {
        namespace: ns,
        operator: _operator,
        client,
    } = installed("scale").await?;
    let ns = ns.as_str();
    let file = manifest_file(&format!("{ns}-manual"), &example("manual-scaling", ns)?)?;
    plane().run_ok("kubectl", &["apply", "-f", &file.display().to_string()])?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let replicas = || async {
        let d = deployments.get_opt("support-chat").await.ok()??;
        Some((d.spec?.replicas?, d.status?.ready_replicas.unwrap_or(0)))
    };
    eventually("3 ready replicas as the example says", || async {
        replicas().await.filter(|r| *r == (3, 3))
    })
    .await?;
    let out = plane().run_ok(
        "kubectl",
        &["scale", "chatcluster/support", "-n", ns, "--replicas=5"],
    )?;
    assert!(out.contains("scaled"), "{out}");
    eventually("5 ready replicas on kwok nodes", || async {
        replicas().await.filter(|r| *r == (5, 5))
    })
    .await?;
    // The Scale object reads spec.replicas and the status the operator
    // copies from the Deployment.
    let path = format!("/apis/chatscale.dev/v1alpha1/namespaces/{ns}/chatclusters/support/scale");
    eventually("the Scale at 5 of 5", || async {
        let scale = plane().run_ok("kubectl", &["get", "--raw", &path]).ok()?;
        let scale: serde_json::Value = serde_json::from_str(&scale).ok()?;
        (scale["spec"]["replicas"] == 5 && scale["status"]["replicas"] == 5).then_some(())
    })
    .await?;
    Ok(())
}
