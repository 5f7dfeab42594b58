// The single-VM recipe: the real nginx with deploy/nginx/chatscale.conf.template
// in front of three chat-servers (no Redis). Long-polling needs a sticky
// upstream (`hash $remote_addr consistent`); round robin breaks it.
//
// Clients get distinct source addresses (127.0.0.2, 127.0.0.3, ...: all of
// 127/8 is the loopback interface on Linux) through an http.Agent with
// `localAddress`, passed as socket.io-client's `agent` option: engine.io-client
// hands it to xmlhttprequest-ssl for every polling request and to `ws` for
// the WebSocket, so nginx sees a different $remote_addr per client.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { startServer, scrapeMetrics } from './lib/server.mjs';
import { startNginx } from './lib/nginx.mjs';
import { connect, ask } from './lib/client.mjs';
import { waitFor } from './lib/wait.mjs';
import { io } from 'socket.io-client';

let servers = [];
let sticky;
let roundRobin;
const agents = [];

/** An agent whose connections all come from `address`. */
function agentFrom(address) {
  const agent = new http.Agent({ localAddress: address, keepAlive: true });
  agents.push(agent);
  return agent;
}

const upstreamOf = (server) => new URL(server.url).host;

/** Parses the harness's access log: "remote_addr upstream_addr status "request"". */
async function accessEntries(nginx) {
  return (await nginx.accessLog()).split('\n').filter(Boolean).map((line) => {
    const [remote, upstream, status] = line.split(' ');
    return { remote, upstream, status: Number(status), line };
  });
}

async function connectedSockets(server) {
  return (await scrapeMetrics(server.adminUrl)).get('chat_connected_sockets');
}

before(async () => {
  servers = await Promise.all([startServer(), startServer(), startServer()]);
  const upstreams = servers.map(upstreamOf);
  [sticky, roundRobin] = await Promise.all([
    startNginx({ upstreams, balance: 'hash $remote_addr consistent' }),
    startNginx({ upstreams, balance: '' }),
  ]);
});

after(async () => {
  for (const agent of agents) agent.destroy();
  const stops = [];
  if (sticky) stops.push(sticky.stop());
  if (roundRobin) stops.push(roundRobin.stop());
  for (const server of servers) stops.push(server.stop());
  await Promise.all(stops);
});

test('sticky upstream: 30 long-polling clients from 30 addresses spread over all servers and chat', async (t) => {
  const baseline = await Promise.all(servers.map(connectedSockets));
  const addresses = Array.from({ length: 30 }, (_, i) => `127.0.0.${i + 2}`);
  const clients = [];
  try {
    for (const address of addresses) {
      const socket = await connect(sticky.url, { transports: ['polling'], agent: agentFrom(address) });
      clients.push(socket);
      assert.equal(socket.io.engine.transport.name, 'polling');
    }

    // Every client joins a room and sends three messages, awaiting each ack:
    // several polling round trips (POST + GET) per session, all through nginx.
    await Promise.all(clients.map(async (socket, i) => {
      const room = `sticky-${i % 5}`;
      const joined = await ask(socket, 'join', { room });
      assert.equal(joined.ok?.room, room, JSON.stringify(joined));
      for (let n = 0; n < 3; n += 1) {
        const ack = await ask(socket, 'message', { room, text: `hello ${n} from ${addresses[i]}` });
        assert.ok(ack.ok && typeof ack.ok.id === 'string' && ack.ok.roomSeq >= 1, JSON.stringify(ack));
      }
    }));
    assert.ok(clients.every((s) => s.connected && s.io.engine.transport.name === 'polling'));

    // nginx really saw 30 source addresses, and each always went to the same upstream.
    const entries = (await accessEntries(sticky)).filter((e) => addresses.includes(e.remote));
    const upstreamByRemote = new Map();
    for (const e of entries) {
      assert.equal(e.status, 200, e.line);
      if (!upstreamByRemote.has(e.remote)) upstreamByRemote.set(e.remote, new Set());
      upstreamByRemote.get(e.remote).add(e.upstream);
    }
    assert.equal(upstreamByRemote.size, addresses.length, 'each client used its own source address');
    for (const [remote, ups] of upstreamByRemote) {
      assert.equal(ups.size, 1, `${remote} was sent to ${[...ups].join(' and ')}`);
    }
    const requestsPerClient = entries.length / addresses.length;
    assert.ok(requestsPerClient >= 8, `several polling round trips per client (${requestsPerClient} requests each)`);

    // The clients are spread over all three chat-servers: each one's metrics
    // count exactly the clients nginx sent to it.
    const expected = servers.map((server) => [...upstreamByRemote.values()]
      .filter((ups) => ups.has(upstreamOf(server))).length);
    assert.equal(expected.reduce((a, b) => a + b, 0), 30);
    await waitFor(async () => {
      const now = await Promise.all(servers.map(connectedSockets));
      return now.every((n, i) => n - baseline[i] === expected[i]);
    }, { timeoutMs: 5_000, what: `chat_connected_sockets deltas ${expected.join('/')}` });
    t.diagnostic(`clients per server ${expected.join('/')}, ${requestsPerClient} proxied requests per client`);
    for (const [i, n] of expected.entries()) {
      assert.ok(n >= 1, `server ${i} got ${n} of the 30 clients (${expected.join('/')})`);
    }
  } finally {
    for (const socket of clients) socket.close();
  }
});

test('round-robin upstream: long-polling breaks (this is why the ingress must be sticky)', async () => {
  // With three upstreams and plain round robin (one nginx worker, nobody else
  // using this nginx), consecutive requests go to servers A, B, C, A, ... So
  // the handshake is answered by A, and the next request of the session (the
  // first poll, or the POST carrying the Socket.IO CONNECT packet) reaches B,
  // which has never heard of that session id: 400 "Session ID unknown".
  const handshake = await fetch(`${roundRobin.url}/socket.io/?EIO=4&transport=polling`);
  assert.equal(handshake.status, 200);
  const open = JSON.parse((await handshake.text()).slice(1)); // "0{...}" = Engine.IO OPEN
  assert.ok(open.sid, 'handshake returned a session id');
  const poll = await fetch(`${roundRobin.url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(open.sid)}`);
  assert.equal(poll.status, 400, 'the next request of the session reached another server');
  assert.match(await poll.text(), /Session ID unknown/);

  // The same with the official client: the handshake succeeds, then the poll or
  // the CONNECT POST hits another server, gets 400, and the client fails with
  // connect_error before ever being connected.
  const socket = io(roundRobin.url, { forceNew: true, reconnection: false, transports: ['polling'] });
  try {
    const outcome = await new Promise((resolve) => {
      const timer = setTimeout(() => resolve({ event: 'nothing within 10 s' }), 10_000);
      socket.once('connect', () => { clearTimeout(timer); resolve({ event: 'connect' }); });
      socket.once('connect_error', (err) => { clearTimeout(timer); resolve({ event: 'connect_error', err }); });
    });
    assert.equal(outcome.event, 'connect_error', `expected connect_error, got ${outcome.event}`);
    assert.match(outcome.err.message, /^xhr (poll|post) error$/);
    assert.equal(outcome.err.description, 400, 'the other server answered 400 Session ID unknown');
    assert.equal(socket.connected, false);
  } finally {
    socket.close();
  }
  const rejected = (await accessEntries(roundRobin)).filter((e) => e.status === 400);
  assert.ok(rejected.length >= 2, 'nginx logged the 400s');

  // A WebSocket-only client is one TCP connection for its whole life, so even
  // round robin works for it; it is long-polling (and the polling phase before
  // the default upgrade) that needs stickiness.
  const ws = await connect(roundRobin.url, { transports: ['websocket'] });
  try {
    assert.equal((await ask(ws, 'join', { room: 'rr-ws' })).ok.room, 'rr-ws');
  } finally {
    ws.close();
  }
});

test('WebSocket through nginx, and the default polling-then-upgrade through the sticky upstream', async () => {
  const ws = await connect(sticky.url, { transports: ['websocket'] });
  try {
    assert.equal(ws.io.engine.transport.name, 'websocket');
    assert.deepEqual((await ask(ws, 'join', { room: 'ws-room' })).ok.room, 'ws-room');
    for (let n = 0; n < 3; n += 1) {
      const ack = await ask(ws, 'message', { room: 'ws-room', text: `ws ${n}` });
      assert.ok(ack.ok?.id, JSON.stringify(ack));
    }
  } finally {
    ws.close();
  }

  // Default transports: start on long-polling, then upgrade to WebSocket. The
  // polling requests and the upgrade must reach the same server; clients from
  // several source addresses so that more than one server is exercised.
  const addresses = Array.from({ length: 15 }, (_, i) => `127.0.0.${i + 40}`);
  const clients = [];
  try {
    for (const address of addresses) clients.push(await connect(sticky.url, { agent: agentFrom(address) }));
    await waitFor(() => clients.every((s) => s.io.engine.transport.name === 'websocket'),
      { timeoutMs: 10_000, what: 'all clients upgraded to websocket' });
    await Promise.all(clients.map(async (socket, i) => {
      const room = `upgrade-${i}`;
      assert.equal((await ask(socket, 'join', { room })).ok?.room, room);
      const ack = await ask(socket, 'message', { room, text: 'after upgrade' });
      assert.deepEqual(ack.ok?.roomSeq, 1, JSON.stringify(ack));
    }));
  } finally {
    for (const socket of clients) socket.close();
  }
  // nginx logs a proxied WebSocket (status 101) when it closes.
  const entries = await waitFor(async () => {
    const mine = (await accessEntries(sticky)).filter((e) => addresses.includes(e.remote));
    return mine.filter((e) => e.status === 101).length === addresses.length && mine;
  }, { timeoutMs: 10_000, what: 'one logged WebSocket upgrade (101) per client' });
  for (const address of addresses) {
    const ups = new Set(entries.filter((e) => e.remote === address).map((e) => e.upstream));
    assert.equal(ups.size, 1, `${address}: polling and upgrade went to ${[...ups].join(' and ')}`);
  }
  const used = new Set(entries.map((e) => e.upstream));
  assert.ok(used.size >= 2, `the upgrading clients reached ${used.size} servers`);
});
