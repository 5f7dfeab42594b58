//! Leader election between operator replicas, against the in-memory API
//! server: one replica leads, the other stands by while the Lease is renewed,
//! takes over once it lapses, and the old leader notices it lost.

use std::time::Duration;

use chatscale_operator::leader::Elector;
use chatscale_tests::fake_kube::{FakeKube, res};
use k8s_openapi::{
    api::coordination::v1::Lease, apimachinery::pkg::apis::meta::v1::MicroTime, jiff::Timestamp,
};
use serde_json::json;

const NAMESPACE: &str = "chatscale-system";
const LEASE: &str = "chatscale-operator";

fn holder(kube: &FakeKube) -> Option<String> {
    kube.get_as::<Lease>(NAMESPACE, LEASE)?
        .spec?
        .holder_identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_the_other_takes_over_when_the_lease_lapses() {
    let kube = FakeKube::start().await;
    let a = Elector::new(kube.client(), NAMESPACE, LEASE, "replica-a");
    let b = Elector::new(kube.client(), NAMESPACE, LEASE, "replica-b");

    tokio::time::timeout(Duration::from_secs(5), a.acquire())
        .await
        .expect("the first replica leads at once");
    assert_eq!(holder(&kube).as_deref(), Some("replica-a"));

    // While A's Lease is fresh, B stands by (a window, since nothing happens).
    let standby = tokio::time::timeout(Duration::from_millis(1500), b.acquire()).await;
    assert!(standby.is_err(), "B took a Lease that A holds");
    assert_eq!(holder(&kube).as_deref(), Some("replica-a"));

    // A stops renewing (its pod died): the Lease was last renewed a minute ago.
    let a_minute_ago = Timestamp::now() - std::time::Duration::from_secs(60);
    kube.edit_direct(&res::<Lease>(), NAMESPACE, LEASE, |lease| {
        lease["spec"]["renewTime"] = json!(MicroTime(a_minute_ago));
    })
    .expect("the Lease exists");
    tokio::time::timeout(Duration::from_secs(5), b.acquire())
        .await
        .expect("B takes over a lapsed Lease at its next attempt");
    assert_eq!(holder(&kube).as_deref(), Some("replica-b"));

    // A, still running, learns at its next renewal that it lost, and stops.
    tokio::time::timeout(Duration::from_secs(15), a.hold())
        .await
        .expect("A notices it no longer leads");
    assert_eq!(holder(&kube).as_deref(), Some("replica-b"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_for_a_new_lease_yield_one_leader() {
    let kube = FakeKube::start().await;
    let a = Elector::new(kube.client(), NAMESPACE, LEASE, "replica-a");
    let b = Elector::new(kube.client(), NAMESPACE, LEASE, "replica-b");
    let winner = tokio::select! {
        () = a.acquire() => "replica-a",
        () = b.acquire() => "replica-b",
    };
    assert_eq!(holder(&kube).as_deref(), Some(winner));
    let (loser, name) = if winner == "replica-a" {
        (&b, "replica-b")
    } else {
        (&a, "replica-a")
    };
    let standby = tokio::time::timeout(Duration::from_millis(1500), loser.acquire()).await;
    assert!(standby.is_err(), "{name} also claims to lead");
    assert_eq!(holder(&kube).as_deref(), Some(winner));
}
