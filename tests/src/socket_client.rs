//! A real Socket.IO client (rust_socketio) for the Rust end-to-end tests.

use std::{sync::Mutex, time::Duration};

use anyhow::Context;
use futures::FutureExt;
use rust_socketio::{
    Event, Payload,
    asynchronous::{Client, ClientBuilder},
};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// A Socket.IO client (rust_socketio) that records every event it receives.
/// Use it from a multi-thread Tokio runtime: on a current-thread runtime its
/// ack callbacks were seen to go missing now and then.
pub struct SocketClient {
    client: Client,
    events: mpsc::UnboundedReceiver<(String, Value)>,
}

impl SocketClient {
    /// Connects and waits for the namespace to be joined (the server's CONNECT
    /// answer): rust_socketio's `connect` returns before that.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let (opened, open) = oneshot::channel();
        let opened = Mutex::new(Some(opened));
        let client = ClientBuilder::new(url)
            .namespace("/")
            .on(Event::Connect, move |_, _| {
                if let Some(opened) = opened.lock().unwrap().take() {
                    let _ = opened.send(());
                }
                async {}.boxed()
            })
            .on_any(move |event, payload, _| {
                if let Payload::Text(values) = payload {
                    let value = values.into_iter().next().unwrap_or(Value::Null);
                    let _ = tx.send((event.to_string(), value));
                }
                async {}.boxed()
            })
            .connect()
            .await?;
        tokio::time::timeout(Duration::from_secs(10), open)
            .await
            .context("no CONNECT answer within 10 s")??;
        Ok(Self { client, events })
    }

    /// Emits `event` with `data` and returns the server's ack.
    pub async fn ask(&self, event: &str, data: Value) -> anyhow::Result<Value> {
        let (tx, rx) = oneshot::channel();
        let tx = Mutex::new(Some(tx));
        self.client
            .emit_with_ack(event, data, Duration::from_secs(5), move |payload, _| {
                if let (Some(tx), Payload::Text(values)) = (tx.lock().unwrap().take(), payload) {
                    // rust_socketio hands ack arguments over as one array.
                    let first = match values.into_iter().next() {
                        Some(Value::Array(args)) => args.into_iter().next(),
                        other => other,
                    };
                    let _ = tx.send(first.unwrap_or(Value::Null));
                }
                async {}.boxed()
            })
            .await?;
        Ok(tokio::time::timeout(Duration::from_secs(5), rx).await??)
    }

    /// The next event received, with its payload.
    pub async fn next_event(&mut self) -> anyhow::Result<(String, Value)> {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await?
            .context("the client stopped")
    }

    pub async fn disconnect(self) -> anyhow::Result<()> {
        Ok(self.client.disconnect().await?)
    }
}
