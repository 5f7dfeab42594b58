// Drives the demo page in headless Chromium against the real server: the page
// must connect, join, chat and render a streamed AI answer with no JS errors,
// and resume without loss or duplicates after its connection drops.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { startServer } from './lib/server.mjs';
import { startRedis } from './lib/redis.mjs';
import { connect, ask } from './lib/client.mjs';

const ANSWER_WORDS = 40;
const TIMEOUT = 20_000;

let server;
let browser;

before(async () => {
  server = await startServer(['--demo-answer-tokens', String(ANSWER_WORDS), '--demo-tokens-per-sec', '200']);
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN ?? '/usr/bin/chromium',
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  });
});

after(async () => {
  try {
    await browser?.close();
  } finally {
    await server?.stop();
  }
});

/** A new page whose JS errors are collected in `errors`. */
async function openPage(t) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const where = m.location()?.url ?? '';
    if (/\.map$/.test(where) && /404/.test(m.text())) return; // a missing source map is harmless
    errors.push(`console: ${m.text()} (${where})`);
  });
  t.after(() => page.close());
  page.setDefaultTimeout(TIMEOUT);
  return { page, errors };
}

test('demo page chats and streams an AI answer', async (t) => {
  const { page, errors } = await openPage(t);
  await page.goto(server.url);
  await page.locator('#state').filter({ hasText: /^connected$/ }).waitFor();
  assert.match(await page.locator('body').innerText(),
    /Authentication is off: demo mode, anyone can join any room\./);

  // Join the default room.
  assert.equal(await page.locator('#room').inputValue(), 'lobby');
  await page.fill('#room', 'browser-test');
  await page.click('#join');
  await page.locator('#log .system', { hasText: 'Joined browser-test' }).waitFor();

  // Chat: the line comes back from the server, marked as ours. Text is escaped.
  const text = 'hello from <b>chromium</b>';
  await page.fill('#text', text);
  await page.click('#send');
  const line = page.locator('#log .chat.mine', { hasText: text });
  await line.waitFor();
  assert.match(await line.innerText(), /you:/);
  assert.equal(await page.locator('#log b').count(), 0, 'user text must not become HTML');
  assert.equal(await page.inputValue('#text'), '');

  // Ask the AI: the prompt shows, then one answer block grows until done.
  await page.fill('#prompt', 'say something');
  await page.click('#ask');
  await page.locator('#log .prompt', { hasText: 'say something' }).waitFor();
  const answer = page.locator('#log .answer.done');
  await answer.waitFor();
  assert.equal(await page.locator('#log .answer').count(), 1);
  assert.ok(await answer.getAttribute('data-stream-id'), 'answer has a stream id');
  assert.equal(await answer.evaluate((el) => el.classList.contains('failed')), false);
  const words = (await answer.locator('.answer-text').textContent()).trim();
  assert.notEqual(words, '');
  assert.equal(words.split(/\s+/).length, ANSWER_WORDS, `answer: ${words}`);
  assert.match(await answer.locator('.status').textContent(), /complete/);

  // An error ack is shown to the user (prompt over the server's size limit).
  await page.fill('#prompt', 'x'.repeat(40_000));
  await page.click('#ask');
  await page.locator('#log .error', { hasText: 'too_large' }).waitFor();

  await page.screenshot({ path: '/tmp/demo.png', fullPage: true });
  assert.deepEqual(errors, []);
});

test('demo page resumes after a dropped connection with every message once, in order', async (t) => {
  const redis = await startRedis();
  const servers = [];
  let talker;
  t.after(async () => {
    talker?.close();
    await Promise.all(servers.map((s) => s.stop()));
    await redis.stop();
  });
  for (let i = 0; i < 2; i++) servers.push(await startServer(['--redis-url', redis.url]));
  const [a, b] = servers;

  const { page, errors } = await openPage(t);
  // Test-side only: keep the page's WebSockets so the test can drop them.
  // Engine.IO sends "5" on a WebSocket once it has upgraded to it.
  await page.addInitScript(() => {
    window.__testSockets = [];
    window.WebSocket = class extends window.WebSocket {
      constructor(...args) { super(...args); window.__testSockets.push(this); }
      send(data) { if (data === '5') this.upgraded = true; super.send(data); }
    };
  });
  await page.goto(a.url);
  await page.locator('#state').filter({ hasText: /^connected$/ }).waitFor();
  const room = 'resume-test';
  await page.fill('#room', room);
  await page.click('#join');
  await page.locator('#log .system', { hasText: `Joined ${room}` }).waitFor();
  await page.fill('#text', 'from the page');
  await page.click('#send');
  await page.locator('#log .chat.mine', { hasText: 'from the page' }).waitFor();

  // Another user on server B; its lines reach the page on A through Redis.
  talker = await connect(b.url);
  assert.ok((await ask(talker, 'join', { room })).ok);
  const sent = ['from the page'];
  const say = async (text) => {
    const ack = await ask(talker, 'message', { room, text });
    assert.ok(ack.ok, JSON.stringify(ack));
    sent.push(text);
  };
  for (let n = 1; n <= 3; n++) await say(`before ${n}`);
  await page.locator('#log .chat', { hasText: 'before 3' }).waitFor();

  // B keeps talking while the page's connection drops and comes back.
  let talking = true;
  const talk = (async () => {
    for (let n = 1; talking; n++) {
      await say(`live ${n}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  await page.waitForFunction(() => window.__testSockets.some((ws) => ws.upgraded && ws.readyState === WebSocket.OPEN));
  await page.evaluate(() => window.__testSockets.forEach((ws) => ws.close()));
  await page.locator('#log .system', { hasText: 'Disconnected' }).waitFor();
  const sentWhenDropped = sent.length;
  const rejoined = page.locator('#log .system', { hasText: `Rejoined ${room}` });
  await rejoined.waitFor();
  assert.ok(sent.length > sentWhenDropped, 'B talked while the page was away');
  console.log(`# ${await rejoined.innerText()} (${sent.length - sentWhenDropped} sent while away)`);
  await new Promise((r) => setTimeout(r, 300));
  talking = false;
  await talk;
  await say('last');
  await page.locator('#log .chat', { hasText: 'last' }).waitFor();

  const shown = await page.locator('#log .chat .text').allTextContents();
  assert.deepEqual(shown, sent, 'every message exactly once, in order');
  assert.match(await rejoined.innerText(), /caught up on [1-9]\d* room event/);
  assert.equal(await page.locator('#log .error').count(), 0);
  assert.doesNotMatch(await page.locator('#log').innerText(), /missed|did not arrive|no longer available/);
  assert.deepEqual(errors, []);
});
