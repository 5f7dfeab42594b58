//! Awaiting a condition instead of sleeping: every test polls through these.

use std::time::Duration;

/// Polls `check` every 100 ms until it yields a value (or fails), for at
/// most `limit`.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let start = std::time::Instant::now();
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls `check` every 100 ms until it holds, for at most `limit`; returns how long it took.
pub async fn wait_until<F, Fut>(
    what: &str,
    limit: Duration,
    mut check: F,
) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    wait_for(what, limit, || {
        let holds = check();
        async move { Ok(holds.await.then_some(())) }
    })
    .await?;
    Ok(start.elapsed())
}
