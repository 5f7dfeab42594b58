// Runs the real nginx (/usr/sbin/nginx) with deploy/nginx/chatscale.conf.template
// in front of chat-servers. Everything nginx writes (pid, logs, temp files)
// stays in a fresh temp dir, so it needs nothing from /etc or /var.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, writeFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitFor } from './wait.mjs';
import { freePort } from './ports.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const nginxBin = process.env.NGINX_BIN ?? '/usr/sbin/nginx';
export const templatePath = resolve(here, '../../../deploy/nginx/chatscale.conf.template');

// Access log format used by the tests to see which upstream served which client.
const LOG_FORMAT = 'chatscale_test \'$remote_addr $upstream_addr $status "$request"\'';

/** Fills the template's {{LISTEN}}, {{BALANCE}} and {{UPSTREAMS}}. */
export async function renderTemplate({ listen, upstreams, balance }) {
  const template = await readFile(templatePath, 'utf8');
  const values = {
    LISTEN: listen,
    BALANCE: balance ? `${balance.replace(/;\s*$/, '')};` : '# round robin (no balancing directive)',
    UPSTREAMS: upstreams.map((u) => `server ${u};`).join('\n    '),
  };
  // Comment lines mention the placeholders too: leave those alone.
  return template.split('\n').map((line) => (line.trimStart().startsWith('#') ? line
    : line.replace(/\{\{(\w+)\}\}/g, (all, name) => {
      if (!(name in values)) throw new Error(`unknown placeholder ${all} in ${templatePath}`);
      return values[name];
    }))).join('\n');
}

function mainConf(dir) {
  const p = (name) => join(dir, name);
  return `# Standalone nginx.conf written by tests/js/lib/nginx.mjs
daemon off;
master_process off;
worker_processes 1;
pid ${p('nginx.pid')};
lock_file ${p('nginx.lock')};
error_log ${p('error.log')} notice;

events {
    worker_connections 1024;
}

http {
    log_format ${LOG_FORMAT};
    access_log ${p('access.log')} chatscale_test;
    client_body_temp_path ${p('client_body')};
    proxy_temp_path ${p('proxy')};
    fastcgi_temp_path ${p('fastcgi')};
    uwsgi_temp_path ${p('uwsgi')};
    scgi_temp_path ${p('scgi')};

    include ${p('chatscale.conf')};
}
`;
}

function accepts(port) {
  return new Promise((done) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    sock.once('connect', () => { sock.destroy(); done(true); });
    sock.once('error', () => { sock.destroy(); done(false); });
  });
}

// Every nginx still running when the test process exits gets killed, also when
// the process is ended by a signal (the test runner's timeout, Ctrl-C).
const running = new Set();
function killAll() {
  for (const child of running) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
}
process.once('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(signal, () => {
    killAll();
    // Only step in if nobody else handles the signal: then die of it as usual.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  });
}

async function startOnce({ upstreams, balance }) {
  const dir = await mkdtemp(join(tmpdir(), 'chatscale-nginx-'));
  const port = await freePort();
  await writeFile(join(dir, 'chatscale.conf'), await renderTemplate({ listen: `127.0.0.1:${port}`, upstreams, balance }));
  await writeFile(join(dir, 'nginx.conf'), mainConf(dir));

  const child = spawn(nginxBin, ['-p', `${dir}/`, '-c', join(dir, 'nginx.conf')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  running.add(child);
  let output = '';
  child.stdout.on('data', (d) => { output += d; });
  child.stderr.on('data', (d) => { output += d; });
  let exitInfo = null;
  const exited = new Promise((done) => child.on('exit', (code, signal) => {
    running.delete(child);
    exitInfo = { code, signal };
    done(exitInfo);
  }));
  const errorLog = async () => readFile(join(dir, 'error.log'), 'utf8').catch(() => '');

  try {
    await waitFor(async () => {
      if (exitInfo) return true; // stop polling, reported below
      return accepts(port);
    }, { timeoutMs: 10_000, everyMs: 20, what: `nginx listening on 127.0.0.1:${port}` });
  } catch (err) {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`${err.message}\n${output}${await errorLog()}`);
  }
  if (exitInfo) {
    const log = `${output}${await errorLog()}`;
    await rm(dir, { recursive: true, force: true });
    const error = new Error(`nginx exited at start (${exitInfo.code ?? exitInfo.signal}):\n${log}`);
    error.addressInUse = /Address already in use/.test(log);
    throw error;
  }

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    dir,
    /** The access log: one line "remote_addr upstream_addr status "request"" per request. */
    accessLog: () => readFile(join(dir, 'access.log'), 'utf8').catch(() => ''),
    errorLog,
    alive: () => exitInfo === null,
    exited,
    async stop() {
      // SIGTERM is nginx's fast shutdown (SIGQUIT, the graceful one, would wait
      // for open WebSockets and held polls); SIGKILL if it hangs anyway.
      if (exitInfo === null) {
        child.kill('SIGTERM');
        let timer;
        const hung = await Promise.race([
          exited.then(() => false),
          new Promise((r) => { timer = setTimeout(() => r(true), 5_000); }),
        ]);
        clearTimeout(timer);
        if (hung) child.kill('SIGKILL');
      }
      const info = await exited;
      await rm(dir, { recursive: true, force: true });
      return info;
    },
  };
}

/**
 * Starts nginx in front of `upstreams` ("host:port" strings) with the balancing
 * directive `balance` ('hash $remote_addr consistent', '' for round robin).
 * Resolves with { url, port, dir, accessLog(), errorLog(), alive(), stop() }.
 */
export async function startNginx({ upstreams, balance = 'hash $remote_addr consistent' }) {
  if (!upstreams?.length) throw new Error('startNginx needs at least one upstream');
  try {
    return await startOnce({ upstreams, balance });
  } catch (err) {
    // The free port can be taken between releasing it and nginx binding it: retry once.
    if (!err.addressInUse) throw err;
    return startOnce({ upstreams, balance });
  }
}

/**
 * The upstream ("host:port") that last answered each source address, from
 * an access log in this format: upstream_addr lists every upstream tried
 * ("a:1, b:2"), the last one answered; 503s and unanswered requests do not count.
 */
export function upstreamsByAddress(accessLog) {
  const byAddress = new Map();
  for (const line of accessLog.split('\n')) {
    const m = /^(\S+) (.+) (\d{3}) "/.exec(line);
    if (m && m[3] !== '503' && m[2] !== '-') byAddress.set(m[1], m[2].split(',').pop().trim());
  }
  return byAddress;
}
