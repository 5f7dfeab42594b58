//! Engine.IO v4 HTTP long-polling, for `--transport polling`: one HTTP/1.1
//! keep-alive connection (hyper) holds the long GET, another carries the POSTs.
//! Packets in one body are separated by the record separator 0x1e.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, client::conn::http1::SendRequest};
use hyper_util::rt::TokioIo;
use tokio::{net::TcpStream, sync::mpsc};

const SEPARATOR: char = '\u{1e}';

/// One polling session after the Engine.IO open packet.
pub struct Polling {
    post: SendRequest<Full<Bytes>>,
    path: String,
    host: String,
    packets: mpsc::UnboundedReceiver<anyhow::Result<String>>,
    poller: tokio::task::JoinHandle<()>,
}

impl Drop for Polling {
    fn drop(&mut self) {
        self.poller.abort();
    }
}

async fn http(stream: TcpStream) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

async fn request(
    sender: &mut SendRequest<Full<Bytes>>,
    method: Method,
    host: &str,
    path: &str,
    body: String,
) -> anyhow::Result<String> {
    sender.ready().await?;
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::CONTENT_TYPE, "text/plain;charset=UTF-8")
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    let body = String::from_utf8(body.to_vec()).context("a polling body that is not UTF-8")?;
    if !status.is_success() {
        bail!("HTTP {status}: {body}");
    }
    Ok(body)
}

impl Polling {
    /// Opens the session over `get` and `post` (two TCP connections to `addr`)
    /// and returns it with the open packet's body.
    pub async fn open(
        addr: SocketAddr,
        get: TcpStream,
        post: TcpStream,
    ) -> anyhow::Result<(Self, String)> {
        let host = addr.to_string();
        let base = "/socket.io/?EIO=4&transport=polling";
        let mut getter = http(get).await?;
        let open = request(&mut getter, Method::GET, &host, base, String::new()).await?;
        let first = open.split(SEPARATOR).next().unwrap_or_default().to_owned();
        let Some(json) = first.strip_prefix('0') else {
            bail!("expected the Engine.IO open packet, got {first:?}");
        };
        let sid = serde_json::from_str::<serde_json::Value>(json)?
            .get("sid")
            .and_then(|s| s.as_str())
            .context("no sid in the open packet")?
            .to_owned();
        let path = format!("{base}&sid={sid}");
        let (tx, packets) = mpsc::unbounded_channel();
        let poller = {
            let (host, path) = (host.clone(), path.clone());
            tokio::spawn(async move {
                loop {
                    match request(&mut getter, Method::GET, &host, &path, String::new()).await {
                        Ok(body) => {
                            for packet in body.split(SEPARATOR).filter(|p| !p.is_empty()) {
                                if packet == "6" {
                                    continue; // noop
                                }
                                let close = packet == "1";
                                if tx.send(Ok(packet.to_owned())).is_err() || close {
                                    return;
                                }
                            }
                        }
                        Err(error) => {
                            let _ = tx.send(Err(error));
                            return;
                        }
                    }
                }
            })
        };
        let polling = Self {
            post: http(post).await?,
            path,
            host,
            packets,
            poller,
        };
        Ok((polling, first))
    }

    pub async fn send(&mut self, packet: String) -> anyhow::Result<()> {
        let answer = request(&mut self.post, Method::POST, &self.host, &self.path, packet).await?;
        if answer != "ok" {
            bail!("POST answered {answer:?}");
        }
        Ok(())
    }

    /// The next packet; None once the session is closed.
    pub async fn recv(&mut self) -> Option<anyhow::Result<String>> {
        match self.packets.recv().await? {
            Ok(packet) if packet == "1" => None,
            other => Some(other),
        }
    }

    /// Sends the Engine.IO close packet.
    pub async fn close(&mut self) {
        let _ = self.send("1".to_owned()).await;
    }
}
