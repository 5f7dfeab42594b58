// A stand-in for a paid OpenAI-compatible API: POST /v1/chat/completions with
// `stream: true` answers with server-sent events following a script the test
// sets. It records every request and when each token was written.
import { createServer } from 'node:http';

const sleepUntil = (t) => new Promise((r) => setTimeout(r, Math.max(0, t - performance.now())));

/**
 * script(request) returns one of:
 *   { tokens: [{ text, at }], breakAfter?: n }   at = ms after the request arrived
 *   { status, body }                             an HTTP error
 */
export async function startFakeOpenAi(script) {
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
    const start = performance.now();
    for (const [i, token] of plan.tokens.entries()) {
      await sleepUntil(start + token.at);
      if (plan.breakAfter === i) {
        res.socket.destroy(); // the connection drops mid-answer
        return;
      }
      const chunk = { id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: token.text }, finish_reason: null }] };
      written.push({ text: token.text, at: performance.now() });
      await new Promise((flushed) => res.write(`data: ${JSON.stringify(chunk)}\n\n`, flushed));
    }
    res.write(`data: ${JSON.stringify({ id: 'c', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
    res.end('data: [DONE]\n\n');
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    baseUrl: `http://127.0.0.1:${server.address().port}/v1`,
    requests,
    written,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}
