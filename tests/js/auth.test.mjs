// Authentication and room authorization with tokens signed here: HS256 with
// a secret file (issuer, audience, expiry), RS256 from a PEM file, ES256 and
// RS256 from a JWKS file with key ids. Every refused handshake says why in
// connect_error; every refused event is answered `forbidden` and changes
// nothing; a token that expires mid-session ends the session; no secret or
// token reaches the logs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import { startServer, scrapeMetrics } from './lib/server.mjs';
import { connect, ask, next, record } from './lib/client.mjs';
import { signJwt, nowSec } from './lib/jwt.mjs';
import { waitFor } from './lib/wait.mjs';

const ISSUER = 'https://issuer.chatscale.test';
const AUDIENCE = 'chatscale-test';
const SECRET = `hs256-${randomBytes(24).toString('hex')}`;
const issued = []; // every token handed to a server, to look for in its logs

let dir;
let hs; // HS256 server
const servers = [];

async function start(args, options) {
  const server = await startServer(['--demo-answer-tokens', '5', '--demo-tokens-per-sec', '1000', ...args], options);
  servers.push(server);
  return server;
}

function hsToken(claims = {}, options = {}) {
  const token = signJwt(
    { sub: 'ann', iss: ISSUER, aud: AUDIENCE, exp: nowSec() + 300, rooms: ['team-42:*', 'support'], ...claims },
    { key: SECRET, ...options },
  );
  issued.push(token);
  return token;
}

/** The connect_error message of a refused handshake (fails if it connects). */
async function refusal(url, options) {
  const error = await connect(url, options).then(
    (socket) => { socket.close(); throw new Error('the handshake was accepted'); },
    (err) => err,
  );
  return error.message;
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'chatscale-auth-'));
  await writeFile(join(dir, 'secret'), `${SECRET}\n`);
  hs = await start(
    ['--jwt-secret-file', join(dir, 'secret'), '--jwt-issuer', ISSUER, '--jwt-audience', AUDIENCE, '--jwt-leeway', '0s'],
    { env: { CHAT_LOG: 'debug' } },
  );
});

after(async () => {
  for (const server of servers) {
    assert.ok(server.alive(), 'every server survived');
    await server.stop();
  }
  await rm(dir, { recursive: true, force: true });
});

test('a valid token connects and its sub is the sender', async () => {
  const ann = await connect(hs.url, { auth: { token: hsToken() } });
  const heard = record(ann);
  assert.ok((await ask(ann, 'join', { room: 'team-42:general' })).ok);
  const sent = await ask(ann, 'message', { room: 'team-42:general', text: 'hello' });
  assert.ok(sent.ok, JSON.stringify(sent));
  await waitFor(() => heard.messages.length === 1, { what: 'the message back' });
  assert.equal(heard.messages[0].from, 'ann');
  ann.close();

  // Clients that cannot set `auth` send the same token as a bearer header.
  const viaHeader = await connect(hs.url, {
    extraHeaders: { Authorization: `Bearer ${hsToken({ sub: 'bob' })}` },
  });
  const bob = record(viaHeader);
  assert.ok((await ask(viaHeader, 'join', { room: 'support' })).ok);
  assert.ok((await ask(viaHeader, 'message', { room: 'support', text: 'hi' })).ok);
  await waitFor(() => bob.messages.length === 1, { what: 'bob hears himself' });
  assert.equal(bob.messages[0].from, 'bob');
  viaHeader.close();
});

test('refused handshakes get a clear connect_error and count as refusals', async () => {
  const before = (await scrapeMetrics(hs.adminUrl)).get('chat_events_rejected_total{code="unauthorized",event="connect"}') ?? 0;
  const cases = [
    ['missing', {}, /^unauthorized: missing token/],
    ['empty', { auth: { token: '' } }, /^unauthorized: missing token/],
    ['expired', { auth: { token: hsToken({ exp: nowSec() - 30 }) } }, /^unauthorized: token expired$/],
    ['not yet valid', { auth: { token: hsToken({ nbf: nowSec() + 600 }) } }, /^unauthorized: token not valid yet/],
    ['wrong audience', { auth: { token: hsToken({ aud: 'someone-else' }) } }, /^unauthorized: wrong audience$/],
    ['no audience', { auth: { token: hsToken({ aud: undefined }) } }, /^unauthorized: missing claim aud$/],
    ['wrong issuer', { auth: { token: hsToken({ iss: 'https://evil.test' }) } }, /^unauthorized: wrong issuer$/],
    ['wrong key', { auth: { token: hsToken({}, { key: `${SECRET}x` }) } }, /^unauthorized: bad signature/],
    ['alg none', { auth: { token: hsToken({}, { alg: 'none' }) } }, /^unauthorized: malformed token$/],
    ['no sub', { auth: { token: hsToken({ sub: undefined }) } }, /^unauthorized: missing claim sub$/],
    ['no exp', { auth: { token: hsToken({ exp: undefined }) } }, /^unauthorized: missing claim exp$/],
    ['garbage', { auth: { token: 'not.a.jwt' } }, /^unauthorized: malformed token$/],
    ['huge', { auth: { token: 'a'.repeat(20_000) } }, /^unauthorized: malformed token$/],
    ['bad header', { extraHeaders: { Authorization: 'Basic dXNlcjpwYXNz' } }, /^unauthorized: missing token/],
  ];
  for (const [name, options, expected] of cases) {
    const message = await refusal(hs.url, options);
    assert.match(message, expected, name);
  }
  const after = (await scrapeMetrics(hs.adminUrl)).get('chat_events_rejected_total{code="unauthorized",event="connect"}');
  assert.equal(after - before, cases.length);
});

test('rooms outside the claim are forbidden and nothing else happens', async () => {
  const ann = await connect(hs.url, { auth: { token: hsToken() } });
  const wally = await connect(hs.url, { auth: { token: hsToken({ sub: 'wally', rooms: ['*'] }) } });
  const watched = record(wally);
  const guarded = ['team-43:x', 'team-4', 'supportx', 'team-420:x', 'lobby'];
  const heads = {};
  for (const room of [...guarded, 'team-42:a']) {
    const joined = await ask(wally, 'join', { room });
    assert.ok(joined.ok, room);
    heads[room] = joined.ok.roomSeq;
  }
  for (const room of ['team-42:a', 'team-42:b:c', 'support']) {
    assert.ok((await ask(ann, 'join', { room })).ok, room);
  }
  for (const room of guarded) {
    for (const [event, payload] of [
      ['join', { room }],
      ['resume', { room, after: 0 }],
      ['message', { room, text: 'let me in' }],
      ['ai-query', { room, prompt: 'let me in' }],
    ]) {
      const ack = await ask(ann, event, payload);
      assert.equal(ack.error?.code, 'forbidden', `${event} ${room}: ${JSON.stringify(ack)}`);
      assert.match(ack.error.message, /does not grant/);
      assert.equal(Object.keys(ack).length, 1);
    }
  }
  // A message in a granted room, to know every earlier event has been handled.
  assert.ok((await ask(ann, 'message', { room: 'team-42:a', text: 'allowed' })).ok);
  await waitFor(() => watched.messages.some((m) => m.text === 'allowed'), { what: 'the allowed message' });
  assert.deepEqual(watched.messages.map((m) => [m.room, m.text]), [['team-42:a', 'allowed']]);
  assert.equal(watched.chunks.length, 0);
  for (const room of guarded) {
    // Joining again answers the room's head: nothing was published there.
    assert.equal((await ask(wally, 'join', { room })).ok.roomSeq, heads[room], room);
  }
  ann.close();
  wally.close();
});

test('a token that expires mid-session gets auth-expired, then the socket is disconnected', async () => {
  const exp = nowSec() + 2;
  const socket = await connect(hs.url, { auth: { token: hsToken({ exp }) } });
  assert.ok((await ask(socket, 'join', { room: 'support' })).ok);
  const order = [];
  socket.on('auth-expired', () => order.push('auth-expired'));
  socket.on('disconnect', () => order.push('disconnect'));
  const expired = next(socket, 'auth-expired', () => true, 6_000);
  const disconnected = new Promise((resolve) => socket.once('disconnect', resolve));
  const payload = await expired;
  assert.match(payload.message, /expired/);
  assert.equal(await disconnected, 'io server disconnect');
  assert.deepEqual(order, ['auth-expired', 'disconnect']);
  assert.ok(Date.now() >= exp * 1000 - 50, 'not before the token expired');
});

test('RS256 from a PEM file; other keys and algorithm confusion are refused', async () => {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = publicKey.export({ type: 'spki', format: 'pem' });
  await writeFile(join(dir, 'rsa.pem'), pem);
  const server = await start(['--jwt-public-key-file', join(dir, 'rsa.pem')]);
  const claims = { sub: 'rita', exp: nowSec() + 300, rooms: ['r-*'] };
  const rs = (key, extra = {}) => {
    const token = signJwt({ ...claims, ...extra }, { alg: 'RS256', key });
    issued.push(token);
    return token;
  };
  const ok = await connect(server.url, { auth: { token: rs(privateKey) } });
  assert.ok((await ask(ok, 'join', { room: 'r-1' })).ok);
  assert.equal((await ask(ok, 'join', { room: 's-1' })).error?.code, 'forbidden');
  ok.close();
  assert.match(await refusal(server.url, { auth: { token: rs(other.privateKey) } }), /^unauthorized: bad signature/);
  // The public key used as an HMAC secret must not pass as HS256.
  assert.match(await refusal(server.url, { auth: { token: signJwt(claims, { key: pem }) } }), /^unauthorized: algorithm not accepted$/);
});

test('ES256 and RS256 from a JWKS file, picked by kid', async () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const stranger = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwks = {
    keys: [
      { ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1', use: 'sig', alg: 'ES256' },
      { ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa-1', use: 'sig', alg: 'RS256' },
    ],
  };
  await writeFile(join(dir, 'jwks.json'), JSON.stringify(jwks));
  const server = await start(['--jwt-public-key-file', join(dir, 'jwks.json'), '--jwt-rooms-claim', 'chat_rooms']);
  const claims = { sub: 'eve', exp: nowSec() + 300, chat_rooms: ['lobby'] };
  const token = (alg, key, kid) => {
    const t = signJwt(claims, { alg, key, kid });
    issued.push(t);
    return t;
  };
  for (const [alg, key, kid] of [['ES256', ec.privateKey, 'ec-1'], ['RS256', rsa.privateKey, 'rsa-1'], ['ES256', ec.privateKey, undefined]]) {
    const socket = await connect(server.url, { auth: { token: token(alg, key, kid) } });
    assert.ok((await ask(socket, 'join', { room: 'lobby' })).ok, `${alg} ${kid}`);
    assert.equal((await ask(socket, 'join', { room: 'elsewhere' })).error?.code, 'forbidden');
    socket.close();
  }
  assert.match(await refusal(server.url, { auth: { token: token('ES256', ec.privateKey, 'ec-9') } }), /^unauthorized: bad signature or unknown key$/);
  assert.match(await refusal(server.url, { auth: { token: token('ES256', stranger.privateKey, 'ec-1') } }), /^unauthorized: bad signature/);
});

test('auth required without a key refuses to start; a short secret too', async () => {
  await assert.rejects(startServer(['--auth', 'required']), /needs a key/);
  await writeFile(join(dir, 'short'), 'too-short');
  await assert.rejects(startServer(['--jwt-secret-file', join(dir, 'short')]), /at least 32 bytes/);
});

test('a rotated key file takes effect without a restart; invalid new contents keep the old key', async () => {
  const file = join(dir, 'rotating');
  const [oldKey, newKey] = [randomBytes(32).toString('hex'), randomBytes(32).toString('hex')];
  // Like the kubelet updating a mounted Secret: new contents appear at once.
  const replace = async (contents) => { await writeFile(`${file}.tmp`, contents); await rename(`${file}.tmp`, file); };
  await replace(oldKey);
  const server = await start(['--jwt-secret-file', file, '--jwt-key-reload', '100ms']);
  const signed = (key) => {
    const token = signJwt({ sub: 'ann', exp: nowSec() + 300, rooms: ['*'] }, { key });
    issued.push(token);
    return { auth: { token } };
  };
  const accepted = (key) => connect(server.url, signed(key)).then((s) => { s.close(); return true; }, () => false);

  const before = await connect(server.url, signed(oldKey));
  assert.match(await refusal(server.url, signed(newKey)), /bad signature/);
  await replace(newKey);
  await waitFor(() => accepted(newKey), { what: 'the new key to take effect' });
  assert.match(await refusal(server.url, signed(oldKey)), /bad signature/, 'the old key no longer verifies');
  assert.ok((await ask(before, 'join', { room: 'kept' })).ok, 'a socket authenticated before the rotation keeps its session');
  before.close();

  await replace('too short to be a key');
  await waitFor(() => /holds no valid keys; keeping the previous keys/.test(server.logs()), { what: 'the warning' });
  assert.ok(await accepted(newKey), 'the last valid key still verifies');
  await waitFor(() => /JWT keys reloaded/.test(server.logs()), { what: 'the reload log line' });
  for (const key of [oldKey, newKey]) assert.ok(!server.logs().includes(key), 'no key is logged');
});

test('the demo default stays auth off, and says so on start-up and on the page', async () => {
  const open = await start([]);
  // The warning goes to stderr just before the listening line goes to stdout:
  // the two pipes may reach us in either order.
  await waitFor(() => /AUTHENTICATION IS OFF/.test(open.logs()), { what: 'the start-up warning' });
  const page = await (await fetch(open.url)).text();
  assert.match(page, /Authentication is off: demo mode/);
  const anyone = await connect(open.url);
  assert.ok((await ask(anyone, 'join', { room: 'anything' })).ok);
  const heard = record(anyone);
  assert.ok((await ask(anyone, 'message', { room: 'anything', text: 'x' })).ok);
  await waitFor(() => heard.messages.length === 1);
  assert.equal(heard.messages[0].from, anyone.id);
  anyone.close();

  assert.doesNotMatch(hs.logs(), /AUTHENTICATION IS OFF/);
  const guardedPage = await (await fetch(hs.url)).text();
  assert.match(guardedPage, /Authentication is required/);
  assert.doesNotMatch(guardedPage, /Authentication is off/);
});

test('the secret from the environment works too, and no secret or token reaches the logs', async () => {
  const envServer = await start([], { env: { CHAT_JWT_SECRET: SECRET, CHAT_LOG: 'debug' } });
  const socket = await connect(envServer.url, { auth: { token: hsToken({ aud: undefined, iss: undefined }) } });
  assert.ok((await ask(socket, 'join', { room: 'support' })).ok);
  socket.close();
  assert.match(await refusal(envServer.url, { auth: { token: hsToken({ exp: nowSec() - 60 }) } }), /expired/);
  for (const server of servers) {
    const logs = server.logs();
    assert.ok(!logs.includes(SECRET), 'the HS256 secret is not logged');
    for (const token of issued) {
      // The signature part alone is enough to replay a token: look for it.
      const signature = token.split('.')[2];
      if (signature) assert.ok(!logs.includes(signature), 'no token is logged');
    }
  }
  assert.match(hs.logs(), /handshake refused/, 'refusals are logged, without the token');
});

test('browser origins: same origin and listed ones pass, others are refused; no Origin passes', async () => {
  const poll = (server, headers) => fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, { headers });
  const host = new URL(hs.url).host;
  assert.equal((await poll(hs, {})).status, 200, 'no Origin: a non-browser client');
  assert.equal((await poll(hs, { Origin: `http://${host}` })).status, 200, 'same origin');
  const refused = await poll(hs, { Origin: 'http://evil.example' });
  assert.equal(refused.status, 403);
  assert.match(await refused.text(), /origin not allowed/);
  // A WebSocket upgrade from a foreign page is refused the same way.
  const ws = io(hs.url, { forceNew: true, reconnection: false, transports: ['websocket'], extraHeaders: { Origin: 'http://evil.example' }, auth: { token: hsToken() } });
  const wsError = await new Promise((resolve) => { ws.once('connect', () => resolve(null)); ws.once('connect_error', resolve); });
  ws.close();
  assert.ok(wsError, 'the upgrade from a foreign origin was refused');

  const listed = await start(['--allowed-origins', 'http://app.example,https://other.example']);
  const ok = await poll(listed, { Origin: 'http://app.example' });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('access-control-allow-origin'), 'http://app.example');
  const preflight = await fetch(`${listed.url}/socket.io/?EIO=4&transport=polling`, {
    method: 'OPTIONS',
    headers: { Origin: 'https://other.example', 'Access-Control-Request-Method': 'POST' },
  });
  assert.ok(preflight.status < 300, `preflight ${preflight.status}`);
  assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://other.example');
  assert.equal((await poll(listed, { Origin: 'http://evil.example' })).status, 403);
});
