// Stand-ins for paid model APIs: an OpenAI-compatible POST /v1/chat/completions
// and the Anthropic Messages API POST /v1/messages, both with `stream: true`,
// answer with server-sent events in their own wire format, following a script
// the test sets. They record every request and when each token was written.
import { createServer } from 'node:http';

const sleepUntil = (t) => new Promise((r) => setTimeout(r, Math.max(0, t - performance.now())));

const sse = (data, event) => `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`;

/** How each API frames a streamed answer. */
const OPENAI = {
  root: '/v1',
  start: () => '',
  token: (text) => sse({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: text }, finish_reason: null }] }),
  error: () => sse({ error: { message: 'server error' } }),
  end: () => `${sse({ id: 'c', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}data: [DONE]\n\n`,
};
const ANTHROPIC = {
  root: '',
  start: () => sse({ type: 'message_start', message: { id: 'msg_1', type: 'message', role: 'assistant', content: [] } }, 'message_start')
    + sse({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }, 'content_block_start')
    + sse({ type: 'ping' }, 'ping'),
  token: (text) => sse({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } }, 'content_block_delta'),
  error: () => sse({ type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }, 'error'),
  end: () => sse({ type: 'content_block_stop', index: 0 }, 'content_block_stop')
    + sse({ type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 1 } }, 'message_delta')
    + sse({ type: 'message_stop' }, 'message_stop'),
};

/**
 * script(request) returns one of:
 *   { tokens: [{ text, at }], breakAfter?: n, errorAfter?: n }
 *       at = ms after the request arrived; breakAfter drops the connection
 *       before token n, errorAfter sends the API's error event there instead
 *   { status, body }                             an HTTP error
 */
export const startFakeOpenAi = (script) => startFake(script, OPENAI);
export const startFakeAnthropic = (script) => startFake(script, ANTHROPIC);

async function startFake(script, wire) {
  const requests = [];
  const written = []; // { text, at: performance.now() } per token, in order
  const server = createServer({ noDelay: true }, async (req, res) => {
    let body = '';
    for await (const part of req) body += part;
    const request = { headers: req.headers, body: JSON.parse(body), url: req.url };
    requests.push(request);
    const plan = script(request);
    if (plan.status) {
      res.writeHead(plan.status, { 'content-type': 'application/json' });
      res.end(plan.body ?? '{}');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(wire.start());
    const start = performance.now();
    for (const [i, token] of plan.tokens.entries()) {
      await sleepUntil(start + token.at);
      if (plan.breakAfter === i) {
        res.socket.destroy(); // the connection drops mid-answer
        return;
      }
      if (plan.errorAfter === i) {
        res.end(wire.error());
        return;
      }
      written.push({ text: token.text, at: performance.now() });
      await new Promise((flushed) => res.write(wire.token(token.text), flushed));
    }
    res.end(wire.end());
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    baseUrl: `http://127.0.0.1:${server.address().port}${wire.root}`,
    requests,
    written,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}
