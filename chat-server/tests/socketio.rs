//! The real chat-server binary, driven by a real Rust Socket.IO client
//! (rust_socketio) and by raw Engine.IO frames over WebSocket.

use std::path::Path;

use chatscale_tests::{ChatServer, SocketClient};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{connect_async, tungstenite::Message};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_chat-server"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_client_chats_and_receives_a_streamed_answer() -> anyhow::Result<()> {
    let server = ChatServer::start(
        bin(),
        &["--demo-answer-tokens", "30", "--demo-tokens-per-sec", "200"],
    )
    .await?;
    let mut alice = SocketClient::connect(&server.url).await?;
    let bob = SocketClient::connect(&server.url).await?;
    assert_eq!(
        alice.ask("join", json!({"room": "rust"})).await?,
        json!({"ok": {"room": "rust", "roomSeq": 0}})
    );
    assert_eq!(
        bob.ask("join", json!({"room": "rust"})).await?["ok"]["roomSeq"],
        0
    );

    let ack = bob
        .ask("message", json!({"room": "rust", "text": "hello from bob"}))
        .await?;
    assert_eq!(ack["ok"]["roomSeq"], 1);
    let (event, message) = alice.next_event().await?;
    assert_eq!(event, "message");
    assert_eq!(message["text"], "hello from bob");
    assert_eq!(message["roomSeq"], 1);
    assert_eq!(message["id"], ack["ok"]["id"]);

    let question = alice
        .ask("ai-query", json!({"room": "rust", "prompt": "hi"}))
        .await?;
    let stream_id = question["ok"]["streamId"].as_str().unwrap().to_owned();
    let (event, prompt) = alice.next_event().await?;
    assert_eq!(
        (event.as_str(), prompt["kind"].as_str()),
        ("message", Some("ai-prompt"))
    );
    let mut chunks: Vec<Value> = Vec::new();
    loop {
        let (event, chunk) = alice.next_event().await?;
        assert_eq!(event, "ai-response-stream");
        assert_eq!(chunk["streamId"], stream_id.as_str());
        let done = chunk["done"].as_bool().unwrap();
        chunks.push(chunk);
        if done {
            break;
        }
    }
    let seqs: Vec<u64> = chunks.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=chunks.len() as u64).collect::<Vec<_>>());
    let room_seqs: Vec<u64> = chunks
        .iter()
        .map(|c| c["roomSeq"].as_u64().unwrap())
        .collect();
    assert_eq!(room_seqs, (3..3 + chunks.len() as u64).collect::<Vec<_>>());
    let text: String = chunks
        .iter()
        .map(|c| c["chunk"].as_str().unwrap())
        .collect();
    assert_eq!(text.split(' ').count(), 30);

    assert_eq!(server.metric("chat_ai_tokens_total").await?, Some(30.0));
    assert_eq!(server.metric("chat_connected_sockets").await?, Some(2.0));
    alice.disconnect().await?;
    bob.disconnect().await?;
    assert!(
        server.stop().await?.success(),
        "SIGTERM ends the server with status 0"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_websocket_frames_cannot_crash_the_server() -> anyhow::Result<()> {
    let mut server = ChatServer::start(bin(), &[]).await?;
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        server.url.replace("http://", "ws://")
    );
    let mut frames: Vec<Message> = [
        "42[\"join\",{",
        "42",
        "4",
        "49999",
        "42[1,2,3]",
        "42[null]",
        "42{}",
        "451-[\"message\",{\"_placeholder\":true,\"num\":0}]",
        "452-[\"join\",{\"_placeholder\":true,\"num\":9}]",
        "40/nope,",
        "42/nope,[\"join\",{\"room\":\"r\"}]",
        "43[]",
        "41",
        "6",
        "3",
        "1",
        "",
        "\u{0}\u{0}",
    ]
    .into_iter()
    .map(Message::text)
    .collect();
    frames.push(Message::text(format!(
        "42[\"join\",{}{}]",
        "[".repeat(20_000),
        "]".repeat(20_000)
    )));
    frames.push(Message::binary(vec![0xff, 0xfe, 0x00, 0x80]));
    frames.push(Message::binary(Vec::new()));

    for frame in frames {
        let (mut ws, _) = connect_async(&ws_url).await?;
        let open = ws.next().await.expect("open packet")?;
        assert!(open.to_text()?.starts_with('0'), "Engine.IO open packet");
        ws.send(Message::text("40")).await?;
        // The namespace connect answer, possibly after a ping.
        loop {
            let packet = ws.next().await.expect("connect packet")?;
            if packet.to_text()?.starts_with("40") {
                break;
            }
            assert_eq!(packet.to_text()?, "2", "only a ping may come first");
        }
        let _ = ws.send(frame).await;
        let _ = ws.close(None).await;
    }

    assert!(
        server.is_running(),
        "the server survived:\n{}",
        server.logs()
    );
    let client = SocketClient::connect(&server.url).await?;
    let ack = client.ask("join", json!({"room": "after"})).await;
    assert!(
        ack.is_ok_and(|a| a["ok"].is_object()),
        "still serving:\n{}",
        server.logs()
    );
    assert_eq!(server.admin_get("/healthz").await?.0, 200);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_lists_every_contract_flag_and_its_env_var() -> anyhow::Result<()> {
    let output = tokio::process::Command::new(bin())
        .arg("--help")
        .output()
        .await?;
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout)?;
    for (flag, env) in [
        ("--port", "CHAT_PORT"),
        ("--admin-port", "CHAT_ADMIN_PORT"),
        ("--ai-provider", "CHAT_AI_PROVIDER"),
        ("--demo-tokens-per-sec", "CHAT_DEMO_TOKENS_PER_SEC"),
        ("--demo-answer-tokens", "CHAT_DEMO_ANSWER_TOKENS"),
        ("--batch-max-chars", "CHAT_BATCH_MAX_CHARS"),
        ("--batch-max-delay-ms", "CHAT_BATCH_MAX_DELAY_MS"),
        ("--openai-api-key-file", "CHAT_OPENAI_API_KEY_FILE"),
    ] {
        assert!(
            help.contains(flag) && help.contains(env),
            "{flag} / {env} missing from --help"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_env_value_is_refused_before_anything_starts() -> anyhow::Result<()> {
    let output = tokio::process::Command::new(bin())
        .env("CHAT_PORT", "notaport")
        .output()
        .await?;
    assert_eq!(output.status.code(), Some(2), "clap's usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("notaport") && stderr.contains("--port"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing was started");
    Ok(())
}
