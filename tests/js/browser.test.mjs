// Drives the demo page in headless Chromium against the real server: the page
// must connect, join, chat and render a streamed AI answer with no JS errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';
import { startServer } from './lib/server.mjs';

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

test('demo page chats and streams an AI answer', async (t) => {
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
