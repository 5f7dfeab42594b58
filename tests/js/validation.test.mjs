// Bad input: every refused event gets its error ack and changes nothing else;
// oversize frames are refused by the transport; garbage packets cannot crash
// the server; other clients keep being served throughout.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, scrapeMetrics } from './lib/server.mjs';
import { connect, ask, record } from './lib/client.mjs';

let server;
before(async () => { server = await startServer(['--demo-answer-tokens', '5', '--demo-tokens-per-sec', '1000']); });
after(async () => {
  assert.ok(server.alive(), 'the server survived every test');
  await server.stop();
});

const kib = (n, ch = 'a') => ch.repeat(n * 1024);

test('every bad input gets its error ack and nothing else happens', async () => {
  const bad = await connect(server.url);
  const watcher = await connect(server.url);
  const watched = record(watcher);
  assert.ok((await ask(watcher, 'join', { room: 'guarded' })).ok);
  assert.ok((await ask(bad, 'join', { room: 'guarded' })).ok);

  const cases = [
    // [event, payload, expected code]
    ['join', { room: '' }, 'invalid_room'],
    ['join', { room: 'has space' }, 'invalid_room'],
    ['join', { room: 'slash/room' }, 'invalid_room'],
    ['join', { room: 'x'.repeat(129) }, 'invalid_room'],
    ['join', { room: 'ünï' }, 'invalid_room'],
    ['join', { room: 42 }, 'bad_request'],
    ['join', 'guarded', 'bad_request'],
    ['join', null, 'bad_request'],
    ['join', ['guarded'], 'bad_request'],
    ['join', {}, 'bad_request'],
    ['leave', { room: 'never-joined' }, 'not_joined'],
    ['leave', { room: '' }, 'invalid_room'],
    ['message', { room: 'guarded', text: kib(8) + 'a' }, 'too_large'],
    ['message', { room: 'guarded', text: '🙂'.repeat(2049) }, 'too_large'],
    ['message', { room: 'guarded', text: '' }, 'bad_request'],
    ['message', { room: 'guarded', text: 7 }, 'bad_request'],
    ['message', { room: 'guarded', text: { nested: true } }, 'bad_request'],
    ['message', { room: 'guarded' }, 'bad_request'],
    ['message', { room: 'guarded', text: 'hi', clientId: 'c'.repeat(129) }, 'too_large'],
    ['message', { room: 'guarded', text: 'hi', clientId: 5 }, 'bad_request'],
    ['message', { room: 'other', text: 'hi' }, 'not_joined'],
    ['message', { room: 'bad room', text: 'hi' }, 'invalid_room'],
    ['ai-query', { room: 'guarded', prompt: kib(32) + 'a' }, 'too_large'],
    ['ai-query', { room: 'guarded', prompt: '' }, 'bad_request'],
    ['ai-query', { room: 'guarded', prompt: ['x'] }, 'bad_request'],
    ['ai-query', { room: 'other', prompt: 'hi' }, 'not_joined'],
    ['ai-query', 'just a string', 'bad_request'],
  ];
  for (const [event, payload, code] of cases) {
    const ack = await ask(bad, event, payload);
    assert.equal(ack.error?.code, code, `${event} ${JSON.stringify(payload).slice(0, 60)} -> ${JSON.stringify(ack).slice(0, 200)}`);
    assert.equal(typeof ack.error.message, 'string');
    assert.ok(ack.error.message.length > 0);
  }
  // An event with no payload at all.
  assert.equal((await bad.timeout(5000).emitWithAck('join')).error.code, 'bad_request');

  // Nothing happened: the watcher saw no event, the room's counter did not move,
  // and the refused join left the socket's rooms as they were.
  const ok = await ask(bad, 'message', { room: 'guarded', text: 'the first real message' });
  assert.equal(ok.ok.roomSeq, 1, 'refused events took no roomSeq');
  assert.equal((await ask(bad, 'message', { room: 'guarded', text: kib(8) })).ok.roomSeq, 2, 'exactly 8 KiB is allowed');
  const question = await ask(bad, 'ai-query', { room: 'guarded', prompt: kib(32) });
  assert.equal(question.ok.roomSeq, 3, 'exactly 32 KiB is allowed');
  await watched.done(question.ok.streamId);
  assert.deepEqual(watched.messages.map((m) => m.roomSeq), [1, 2, 3]);

  const m = await scrapeMetrics(server.adminUrl);
  assert.equal(m.get('chat_events_rejected_total{code="invalid_room",event="join"}'), 5);
  assert.equal(m.get('chat_events_rejected_total{code="too_large",event="message"}'), 3);
  bad.close(); watcher.close();
});

test('a socket may be in at most 32 rooms', async () => {
  const s = await connect(server.url);
  for (let i = 0; i < 32; i++) assert.ok((await ask(s, 'join', { room: `many-${i}` })).ok, `room ${i}`);
  assert.ok((await ask(s, 'join', { room: 'many-0' })).ok, 'joining a room again is fine');
  assert.equal((await ask(s, 'join', { room: 'many-32' })).error.code, 'too_many_rooms');
  assert.equal((await ask(s, 'message', { room: 'many-32', text: 'x' })).error.code, 'not_joined', 'the refused join did not happen');
  assert.ok((await ask(s, 'leave', { room: 'many-5' })).ok);
  assert.ok((await ask(s, 'join', { room: 'many-32' })).ok, 'leaving frees a place');
  s.close();
});

test('unknown events are ignored and the socket stays usable', async () => {
  const s = await connect(server.url);
  s.emit('no-such-event', { anything: true });
  s.emit('__proto__', 1);
  s.emit('join'); // no ack asked: nothing to answer
  assert.ok((await ask(s, 'join', { room: 'after-unknown' })).ok);
  assert.ok(s.connected);
  s.close();
});

test('oversize frames are refused by the transport on both transports', async () => {
  const bystander = await connect(server.url);
  await ask(bystander, 'join', { room: 'big' });
  for (const transports of [['websocket'], ['polling']]) {
    const s = await connect(server.url, { transports });
    await ask(s, 'join', { room: 'big' });
    const gone = new Promise((resolve) => s.once('disconnect', resolve));
    s.emit('message', { room: 'big', text: kib(200) }); // far over the 128 KiB payload limit
    const reason = await gone;
    assert.match(reason, /transport (close|error)/, `${transports}: ${reason}`);
  }
  const ack = await ask(bystander, 'message', { room: 'big', text: 'still served' });
  assert.equal(ack.ok.roomSeq, 1, 'no oversize message reached the room');
  bystander.close();
});

test('garbage packets on the wire cannot crash the server', async () => {
  const base = `${server.url}/socket.io/?EIO=4&transport=polling`;
  const open = async () => {
    const body = await (await fetch(base)).text();
    const { sid } = JSON.parse(body.slice(1));
    await fetch(`${base}&sid=${sid}`, { method: 'POST', body: '40' });
    return sid;
  };
  const garbage = [
    '42["join",{', '42', '4', '4["x"]', '49999', '42[1,2,3]', '42[null]', '42[]', '42{}',
    '42["message",{"room":"r","text":', '451-["message",{"_placeholder":true,"num":0}]',
    '42["join",' + '['.repeat(5000) + ']'.repeat(5000) + ']', 'xyz', '\u001e\u001e', '4\u001e42["join"]',
    '42["join",{"room":"r"}]'.repeat(3), '43999[]', '41', '40/nope,', '42/nope,["join",{"room":"r"}]',
    `42["message",{"room":"r","text":"${'\\u0000'.repeat(100)}"}]`, 'b' + 'A'.repeat(1000), '6', '5', '2', '1',
  ];
  for (const packet of garbage) {
    const sid = await open();
    const res = await fetch(`${base}&sid=${sid}`, { method: 'POST', body: packet });
    assert.ok(res.status < 500, `${packet.slice(0, 40)} -> HTTP ${res.status}`);
  }
  assert.ok(server.alive());
  const s = await connect(server.url);
  assert.ok((await ask(s, 'join', { room: 'after-garbage' })).ok, 'still serving');
  s.close();
});
