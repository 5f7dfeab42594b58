"""Tests of chat_client.py against the real thing, so the example stays true.

A real redis-server, two real chat-server processes (auth on, HS256 tokens
signed here) and real nginx with the repository's recipe
(deploy/nginx/chatscale.conf.template) in front of them: messages between the
two servers, an AI answer from the demo model, error acks as ChatError, and a
drain of the client's server while another client keeps talking.
"""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from chat_client import ChatClient, ChatError, Room

REPO = Path(__file__).resolve().parents[2]
SERVER_BIN = Path(os.environ.get("CHAT_SERVER_BIN", REPO / "target/debug/chat-server"))
NGINX_BIN = os.environ.get("NGINX_BIN", "/usr/sbin/nginx")
SECRET = secrets.token_hex(24)  # 48 bytes: chat-server wants at least 32
ADMIN = "admin-token-for-python-tests"
LISTENING = re.compile(r"chat-server listening on (http://\S+) \(admin (http://\S+)\)")


def need(path, what):
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"{what} not found at {path}: {HINTS[what]}", pytrace=False)


HINTS = {
    "chat-server": "build it with `cargo build -p chat-server` or set CHAT_SERVER_BIN",
    "redis-server": "install Redis 7+ (`apt-get install redis-server`)",
    "nginx": "install nginx (`apt-get install nginx-light`) or set NGINX_BIN",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check, what, timeout=15.0, every=0.05):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


async def until(check, what, timeout=30.0, every=0.05):
    """Bounded polling for a condition (`check` may be a coroutine function)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(every)


def token(sub, rooms, ttl=300):
    """An HS256 JWT, signed with the servers' secret."""
    enc = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=")  # noqa: E731
    signing_input = enc({"alg": "HS256", "typ": "JWT"}) + b"." + enc({"sub": sub, "rooms": rooms, "exp": int(time.time()) + ttl})
    signature = hmac.new(SECRET.encode(), signing_input, hashlib.sha256).digest()
    return (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()


class Process:
    """A child process whose output is collected (for failure messages)."""

    def __init__(self, args, env=None):
        self.output = ""
        self.child = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.child.stdout:
            self.output += line

    def stop(self):
        if self.child.poll() is None:
            self.child.kill()
        self.child.wait(timeout=10)


@pytest.fixture
def procs():
    started = []
    yield started
    for p in reversed(started):
        p.stop()


@pytest.fixture
def redis_url(procs):
    need(shutil.which("redis-server") or "/usr/bin/redis-server", "redis-server")
    port = free_port()
    procs.append(Process(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]))

    def pong():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    wait_for(pong, f"redis-server on port {port}")
    return f"redis://127.0.0.1:{port}"


def start_server(procs, redis_url):
    need(SERVER_BIN, "chat-server")
    env = {**os.environ, "CHAT_JWT_SECRET": SECRET, "CHAT_ADMIN_TOKEN": ADMIN, "CHAT_LOG": "info"}
    args = [str(SERVER_BIN), "--host", "127.0.0.1", "--port", "0", "--admin-port", "0", "--redis-url", redis_url,
            "--drain-jitter-ms", "300", "--demo-tokens-per-sec", "40", "--demo-answer-tokens", "60",
            "--batch-max-chars", "16"]
    p = Process(args, env)
    procs.append(p)
    wait_for(lambda: LISTENING.search(p.output) or p.child.poll() is not None, "chat-server to listen")
    m = LISTENING.search(p.output)
    assert m, f"chat-server exited early:\n{p.output}"
    return {"url": m[1], "admin": m[2], "proc": p}


@pytest.fixture
def servers(procs, redis_url):
    return [start_server(procs, redis_url), start_server(procs, redis_url)]


@pytest.fixture
def nginx(procs, servers):
    """Real nginx with the repository's recipe: sticky (hash), 503 -> next upstream."""
    need(NGINX_BIN, "nginx")
    d = Path(tempfile.mkdtemp(prefix="chatscale-py-nginx-"))
    port = free_port()
    values = {"LISTEN": f"127.0.0.1:{port}", "BALANCE": "hash $remote_addr consistent;",
              "UPSTREAMS": "\n    ".join(f"server {s['url'].removeprefix('http://')};" for s in servers)}
    template = (REPO / "deploy/nginx/chatscale.conf.template").read_text()
    conf = "\n".join(line if line.lstrip().startswith("#") else re.sub(r"\{\{(\w+)\}\}", lambda m: values[m[1]], line)
                     for line in template.split("\n"))
    (d / "chatscale.conf").write_text(conf)
    temp = "\n".join(f"    {k}_temp_path {d / k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (d / "nginx.conf").write_text(f"""daemon off;
master_process off;
worker_processes 1;
pid {d / 'nginx.pid'};
error_log {d / 'error.log'} notice;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    include {d / 'chatscale.conf'};
}}
""")
    p = Process([NGINX_BIN, "-p", f"{d}/", "-c", str(d / "nginx.conf")])
    procs.append(p)

    def accepts():
        assert p.child.poll() is None, f"nginx exited:\n{p.output}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False

    wait_for(accepts, f"nginx on port {port}")
    yield f"http://127.0.0.1:{port}"
    p.stop()
    shutil.rmtree(d, ignore_errors=True)


async def metric(server, name):
    async with aiohttp.ClientSession() as http, http.get(f"{server['admin']}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    raise AssertionError(f"{name} not in {server['admin']}/metrics")


class Recorder:
    """A ChatClient that keeps every applied event, in the order it applied them."""

    def __init__(self, url, sub, rooms=("py-*",)):
        self.events = []
        self.connection = []  # for each event, the connection (1, 2, ...) it was applied on
        self.client = client(url, token=token(sub, list(rooms)), on_event=self._take)

    def _take(self, room, event, data):
        self.events.append((event, data))
        self.connection.append(self.client.stats["connects"])

    def seqs(self):
        return [data["roomSeq"] for _, data in self.events]


OPEN = []  # every client a test made, closed after it whatever happened


def client(*args, **kwargs):
    c = ChatClient(*args, **kwargs)
    OPEN.append(c)
    return c


def run(coro):
    async def closing():
        try:
            await asyncio.wait_for(coro, 120)
        finally:
            while OPEN:
                await OPEN.pop().close()

    asyncio.run(closing())


def test_join_send_receive_across_two_servers(servers):
    async def scenario():
        ann, bob = Recorder(servers[0]["url"], "ann"), Recorder(servers[1]["url"], "bob")
        await ann.client.connect()
        await bob.client.connect()
        joined = await ann.client.join("py-lobby")
        assert await bob.client.join("py-lobby") == joined
        acks = await asyncio.gather(*[c.client.send("py-lobby", f"{who} {i}")
                                      for i in range(10) for c, who in ((ann, "ann"), (bob, "bob"))])
        final = max(a["roomSeq"] for a in acks)
        for r in (ann, bob):
            await until(lambda r=r: r.client.rooms["py-lobby"].contiguous >= final, "every line on both servers")
        expected = list(range(joined + 1, final + 1))
        assert ann.seqs() == expected and bob.seqs() == expected
        assert [d["text"] for _, d in ann.events] == [d["text"] for _, d in bob.events]
        assert sorted(d["text"] for _, d in ann.events) == sorted(f"{w} {i}" for w in ("ann", "bob") for i in range(10))
        assert {d["from"] for _, d in ann.events} == {"ann", "bob"}  # the token's sub

    run(scenario())


def test_ai_answer_is_assembled_in_seq_order(servers):
    async def scenario():
        ann, bob = Recorder(servers[0]["url"], "ann"), Recorder(servers[1]["url"], "bob")
        for r in (ann, bob):
            await r.client.connect()
            await r.client.join("py-ai")
        answer = await ann.client.ask("py-ai", "why Redis?")
        chunks = [d for e, d in ann.events if e == "ai-response-stream"]
        assert len(chunks) > 2, f"expected a streamed answer, got {chunks}"
        assert [c["seq"] for c in chunks] == list(range(1, len(chunks) + 1))
        assert [c["done"] for c in chunks].count(True) == 1 and chunks[-1]["done"]
        assert answer == "".join(c["chunk"] for c in chunks) and len(answer.split()) == 60  # --demo-answer-tokens
        # The member on the other server assembles the same answer.
        other = await bob.client.answer(chunks[0]["streamId"], timeout=30)
        assert other == answer

    run(scenario())


def test_error_acks_become_chat_errors(servers):
    async def scenario():
        ann = Recorder(servers[0]["url"], "ann", rooms=("py-*",))
        await ann.client.connect()
        with pytest.raises(ChatError) as forbidden:
            await ann.client.join("staff")
        assert forbidden.value.code == "forbidden" and "staff" not in ann.client.rooms
        wide = client(servers[0]["url"], token=token("wally", ["*"]))
        await wide.connect()
        with pytest.raises(ChatError) as invalid:
            await wide.join("no spaces allowed")
        assert invalid.value.code == "invalid_room" and invalid.value.message
        with pytest.raises(ChatError) as not_joined:
            await wide.send("py-big", "hello")
        assert not_joined.value.code == "not_joined"
        await wide.join("py-big")
        with pytest.raises(ChatError) as too_large:
            await wide.send("py-big", "x" * 9000)
        assert too_large.value.code == "too_large"
        assert (await wide.send("py-big", "x" * 8000))["roomSeq"] == 1, "a refused line changed nothing"
        bad = client(servers[0]["url"], token=token("eve", ["*"], ttl=-60))
        with pytest.raises(ChatError) as refused:
            await bad.connect()
        assert (refused.value.code, refused.value.message) == ("unauthorized", "token expired")

    run(scenario())


def test_drain_moves_the_client_without_a_gap_or_a_duplicate(servers, nginx):
    async def scenario():
        watcher = Recorder(nginx, "wendy")
        await watcher.client.connect()
        joined = await watcher.client.join("py-drain")
        counts = [await metric(s, "chat_connected_sockets") for s in servers]
        assert sorted(counts) == [0, 1], f"the watcher should be on one server: {counts}"
        drained, other = (servers[0], servers[1]) if counts[0] == 1 else (servers[1], servers[0])

        talker = Recorder(other["url"], "tom")
        await talker.client.connect()
        await talker.client.join("py-drain")
        last = {"roomSeq": joined}
        talking = True

        async def talk():
            n = 0
            while talking:
                last.update(await talker.client.send("py-drain", f"line {n}"))
                n += 1
                await asyncio.sleep(0.01)

        chatter = asyncio.create_task(talk())
        asking = asyncio.create_task(talker.client.ask("py-drain", "during the drain"))
        await until(lambda: len(watcher.events) > 10, "events before the drain")
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{drained['admin']}/drain") as r:
                assert r.status == 202, await r.text()

            async def state():
                async with http.get(f"{drained['admin']}/drain") as r:
                    return (await r.json())["state"] == "drained"

            await until(state, "drained", timeout=30)
        await until(lambda: watcher.client.stats["resumes"] >= 1, f"the watcher resumed on the other server ({watcher.client.stats}, connected={watcher.client.sio.connected}, eio={watcher.client.sio.eio.state})")
        moved_at = last["roomSeq"]
        await until(lambda: last["roomSeq"] > moved_at + 20, "more lines after the move")
        talking = False
        await chatter
        answer = await asking
        # A last line after everything else marks the end of the run.
        final = (await talker.client.send("py-drain", "the end"))["roomSeq"]
        await until(lambda: watcher.client.rooms["py-drain"].contiguous >= final, f"every event up to {final}")
        stream = next(d["streamId"] for e, d in watcher.events if e == "ai-response-stream")
        assert await watcher.client.answer(stream, timeout=30) == answer, "the answer across the move"

        assert watcher.seqs() == list(range(joined + 1, final + 1)), "a gap, a duplicate or a reordering"
        stats = watcher.client.stats
        assert stats == {"connects": 2, "resumes": 1, "draining": 1}, stats
        # An Engine.IO close: python-socketio calls it "server disconnect" and leaves reconnecting to us.
        assert watcher.client.disconnects == ["server disconnect"]
        assert await metric(other, "chat_connected_sockets") == 2
        assert await metric(drained, "chat_connected_sockets") == 0
        on = {c for (e, d), c in zip(watcher.events, watcher.connection) if e == "ai-response-stream"}
        assert on == {1, 2}, f"the answer should span the move: chunks applied on connections {on}"
        print(f"drain: {final - joined} events applied once each, in order, "
              f"{watcher.connection.count(2)} of them after the move; "
              f"{watcher.client.rooms['py-drain'].duplicates} duplicates dropped; stats {stats}")

    run(scenario())


def test_the_client_rule_holds_back_early_events_and_drops_duplicates():
    """The ordering rule on its own, with the arrival orders a move can produce."""
    applied = []
    room = Room(lambda event, data: applied.append(data.get("roomSeq")))
    room.take("message", {"roomSeq": 12})  # before the join's ack: held back
    room.start_at(10)  # joined at 10: owed 11, 12, ...
    assert applied == [] and room.contiguous == 10
    for seq in (11, 14, 13, 12, 11, 15, 14):  # a replay overlapping live events
        room.take("message", {"roomSeq": seq})
    room.take("message", {"text": "Redis was down"})  # no roomSeq: applied live
    room.take("message", {"roomSeq": 9})  # from before the join
    assert applied == [11, 12, 13, 14, 15, None] and room.contiguous == 15
    assert room.duplicates == 4 and room.pending == {}
    room.take("message", {"roomSeq": 17})
    assert room.contiguous == 15 and list(room.pending) == [17], "a gap holds later events back"
    room.start_at(16)  # resume_too_old: the log starts at 17
    assert applied[-1] == 17 and room.contiguous == 17
