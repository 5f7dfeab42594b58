// Exercises every part of the public API as an app would, so that
// `tsc --noEmit --strict` on this file checks index.d.ts (run by
// tests/js/client-library.test.mjs). The @ts-expect-error lines must fail to
// type-check: if the declarations grew loose (any), tsc reports them unused.
import {
  ChatClient, ChatError, TimeoutError, ErrorCode,
  type Answer, type AnswerResult, type ChatMessage, type ErrorCodeValue, type Room,
} from '@chatscale/client';

export async function usage(): Promise<string> {
  const chat = new ChatClient('https://chat.example.com', {
    getToken: async () => 'jwt',
    socketOptions: { transports: ['websocket'], withCredentials: true, reconnectionDelayMax: 5000 },
    ackTimeoutMs: 5000,
    gapTimeoutMs: 2000,
  });
  chat.on('connected', ({ first }) => { const f: boolean = first; void f; });
  chat.on('moved', ({ reconnectAfterMs }) => { const ms: number | undefined = reconnectAfterMs; void ms; });
  chat.on('disconnected', ({ reason, willReconnect }) => { const r: string = reason; void r; void willReconnect; });
  chat.on('auth-expired', () => {});
  chat.on('reconnecting', ({ attempt }) => { void attempt; });
  await chat.connect();

  const room: Room = await chat.join('lobby');
  room.on('message', (m: ChatMessage) => { const seq: number | undefined = m.roomSeq; void seq; });
  room.on('answer', (a: Answer) => a.on('chunk', ({ text, seq }) => { void text; void seq; }));
  room.on('gap', ({ from, to }) => { const n: number = to - from; void n; });
  const sent = await room.send('hello', { clientId: 'c1' });
  const seq: number | undefined = sent.roomSeq;
  void seq;

  const answer = await room.ask('why is the sky blue?');
  let text = '';
  for await (const delta of answer) text += delta;
  const result: AnswerResult = await answer.done;
  if (result.outcome === 'interrupted' || result.outcome === 'error') text += ` (${result.error ?? ''})`;

  try {
    await room.send('x'.repeat(10_000));
  } catch (error) {
    if (error instanceof TimeoutError) { const code: 'timeout' = error.code; void code; }
    if (error instanceof ChatError && error.code === ErrorCode.TooLarge) text += error.event ?? '';
    if (error instanceof ChatError && error.code === ErrorCode.RateLimited) text += String(error.retryAfterMs);
  }
  const code: ErrorCodeValue = ErrorCode.NotJoined;
  void code;
  const ok = await chat.request<{ room: string }>('leave', { room: 'lobby' });
  text += ok.room;
  const stats = chat.stats;
  text += stats.disconnects.join(',') + stats.duplicatesDropped + stats.resumes + stats.gapFetches;

  // @ts-expect-error: not an error code
  const wrong: ErrorCodeValue = 'no_such_code';
  void wrong;
  // @ts-expect-error: ErrorCode is read-only
  ErrorCode.TooLarge = 'x';
  // @ts-expect-error: send takes a string
  await room.send(42);
  // @ts-expect-error: no such event
  room.on('mesage', () => {});
  // @ts-expect-error: done resolves with a result, not a string
  const s: string = await answer.done;
  void s;

  await room.leave();
  chat.close();
  return text;
}
