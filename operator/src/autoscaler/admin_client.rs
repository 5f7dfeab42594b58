//! The operator's client of chat-server's admin API (`/drain` and `/shed`),
//! over HTTP with the cluster's admin token. The drain orchestration and the
//! rebalancer talk to it through [`DrainApi`] and [`ShedApi`].

use std::time::Duration;

use async_trait::async_trait;
use chatscale_contract::admin::{self, DrainState, DrainStatus, ShedRequest};

use super::drain::DrainApi;

/// One pod's shed API (`/shed` on its admin port).
#[async_trait]
pub trait ShedApi: Send + Sync {
    /// Asks the pod to shed: it replaces a shed in progress.
    async fn shed(&self, admin_url: &str, request: ShedRequest) -> anyhow::Result<()>;
}

/// The admin API over HTTP.
pub struct AdminClient {
    client: reqwest::Client,
    token: String,
}

impl AdminClient {
    pub fn new(token: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("a plain HTTP client builds");
        Self { client, token }
    }

    fn request(
        &self,
        method: reqwest::Method,
        admin_url: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, admin::url(admin_url, path))
            .bearer_auth(&self.token)
    }

    async fn expect_ok(
        &self,
        request: reqwest::RequestBuilder,
        what: &str,
    ) -> anyhow::Result<reqwest::Response> {
        let response = request.send().await?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            anyhow::bail!("{what} answered HTTP {}: {}", status.as_u16(), body.trim());
        }
        Ok(response)
    }
}

#[async_trait]
impl DrainApi for AdminClient {
    async fn start(&self, admin_url: &str) -> anyhow::Result<()> {
        let request = self.request(reqwest::Method::POST, admin_url, admin::DRAIN);
        self.expect_ok(request, "drain API").await.map(drop)
    }

    async fn state(&self, admin_url: &str) -> anyhow::Result<DrainState> {
        let request = self.request(reqwest::Method::GET, admin_url, admin::DRAIN);
        let text = self.expect_ok(request, "drain API").await?.text().await?;
        Ok(serde_json::from_str::<DrainStatus>(&text)?.state)
    }

    async fn cancel(&self, admin_url: &str) -> anyhow::Result<bool> {
        let response = self
            .request(reqwest::Method::DELETE, admin_url, admin::DRAIN)
            .send()
            .await?;
        match response.status().as_u16() {
            200..=299 => Ok(true),
            // Nothing to cancel: the drain had finished.
            admin::CANCEL_TOO_LATE => Ok(false),
            status => anyhow::bail!("drain API answered HTTP {status}"),
        }
    }
}

#[async_trait]
impl ShedApi for AdminClient {
    async fn shed(&self, admin_url: &str, request: ShedRequest) -> anyhow::Result<()> {
        let call = self
            .request(reqwest::Method::POST, admin_url, admin::SHED)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&request)?);
        self.expect_ok(call, "shed API").await.map(drop)
    }
}
