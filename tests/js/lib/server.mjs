// Starts the real chat-server binary on free ports and stops it again.
// The binary prints one line on stdout when it listens:
//   chat-server listening on http://HOST:PORT (admin http://HOST:PORT)
import { spawn } from 'node:child_process';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
export const serverBin =
  process.env.CHAT_SERVER_BIN ?? resolve(here, '../../../target/debug/chat-server');

const LISTENING = /chat-server listening on (http:\/\/\S+) \(admin (http:\/\/\S+)\)/;

/**
 * Starts chat-server with `args` (ports default to 0 = free) and resolves once
 * it listens. `env` adds environment variables.
 */
export function startServer(args = [], { env = {} } = {}) {
  const child = spawn(
    serverBin,
    ['--host', '127.0.0.1', '--port', '0', '--admin-port', '0', ...args],
    { env: { ...process.env, CHAT_LOG: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let stdout = '';
  let stderr = '';
  const exited = new Promise((done) => child.on('exit', (code, signal) => done({ code, signal })));
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`chat-server did not start:\n${stderr}`)), 30_000);
    child.stderr.on('data', (d) => { stderr += d; });
    child.stdout.on('data', (d) => {
      stdout += d;
      const m = LISTENING.exec(stdout);
      if (m && timer) {
        clearTimeout(timer);
        resolvePromise({
          url: m[1].replace('0.0.0.0', '127.0.0.1'),
          adminUrl: m[2].replace('0.0.0.0', '127.0.0.1'),
          pid: child.pid,
          logs: () => stdout + stderr,
          alive: () => child.exitCode === null && child.signalCode === null,
          exited,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            return exited;
          },
          /** Sends `signal` (e.g. 'SIGKILL' for a crash) and resolves on exit. */
          async kill(signal) {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`chat-server exited early (${code ?? signal}):\n${stderr}`));
    });
  });
}

/** Fetches /metrics and returns a map "name{labels}" -> number. */
export async function scrapeMetrics(adminUrl) {
  const text = await (await fetch(`${adminUrl}/metrics`)).text();
  const values = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}

/**
 * Starts `count` chat-servers on `redis` with `args` and the admin token
 * `token`; `cleanups` gets a kill for each.
 */
export async function startServers(count, args, redis, { token, cleanups }) {
  const list = [];
  for (let i = 0; i < count; i++) {
    const s = await startServer(['--redis-url', redis.url, ...args], { env: { CHAT_ADMIN_TOKEN: token } });
    cleanups.push(() => s.kill('SIGKILL'));
    list.push(s);
  }
  return list;
}
