// Small pieces every Socket.IO benchmark here uses: progress logging, a
// plain-text table, and a `join` that survives a dropped first event.

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Progress on stderr; results go to stdout. */
export const log = (...a) => console.error('#', ...a);

/** A table with a header rule; the first column left-aligned, the others right. */
export function table(headers, rows) {
  const cells = [headers, ...rows].map((r) => r.map(String));
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(cells[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}

// A socket's first event, sent right after `connect`, is sometimes dropped by
// the server without an ack. `join` is idempotent, so it is retried (up to 5
// tries of 1 s), and `joinRetries` counts how often that happened.
export const joinRetries = { count: 0, joins: 0 };
export async function join(socket, room) {
  joinRetries.joins += 1;
  for (let attempt = 1; ; attempt++) {
    let joined;
    try {
      joined = await socket.timeout(1_000).emitWithAck('join', { room });
    } catch {
      if (attempt >= 5) throw new Error(`join ${room}: no ack after ${attempt} tries`);
      joinRetries.count += 1;
      continue;
    }
    if (!joined.ok) throw new Error(`join ${room}: ${JSON.stringify(joined)}`);
    return;
  }
}
