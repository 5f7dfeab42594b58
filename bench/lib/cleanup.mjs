// What a benchmark started is stopped however it ends: `cleanups` runs in
// reverse on `cleanup()`, on SIGINT/SIGTERM and on an uncaught error; on any
// exit, the chat-servers this process started are sent SIGTERM (by pid).
import { readdirSync, readFileSync } from 'node:fs';

export const cleanups = [];

export async function cleanup() {
  while (cleanups.length) {
    const c = cleanups.pop();
    try { await c(); } catch { /* best effort */ }
  }
}

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => { await cleanup(); process.exit(130); });
}
for (const event of ['uncaughtException', 'unhandledRejection']) {
  process.once(event, async (error) => { console.error(error); await cleanup(); process.exit(1); });
}
process.once('exit', () => {
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const close = stat.lastIndexOf(')');
      const ppid = Number(stat.slice(close + 2).split(' ')[1]);
      if (ppid === process.pid && stat.includes('(chat-server)')) process.kill(Number(pid), 'SIGTERM');
    } catch { /* gone */ }
  }
});
