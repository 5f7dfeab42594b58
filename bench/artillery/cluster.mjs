// Runs chat.yml once against a local cluster: 3 release chat-servers on one
// redis-server behind nginx (sticky: hash $remote_addr consistent, the
// deploy/nginx template), then stops everything. Artillery's summary goes to
// stdout.
//   CHAT_SERVER_BIN=target/release/chat-server node bench/artillery/cluster.mjs
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from '../../tests/js/lib/server.mjs';
import { startRedis } from '../../tests/js/lib/redis.mjs';
import { startNginx } from '../../tests/js/lib/nginx.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const redis = await startRedis();
const servers = await Promise.all([0, 1, 2].map(() => startServer(['--redis-url', redis.url], { env: { CHAT_LOG: 'warn' } })));
const nginx = await startNginx({ upstreams: servers.map((s) => s.url.replace('http://', '')) });
console.error(`cluster: nginx ${nginx.url} -> ${servers.map((s) => s.url).join(', ')} on ${redis.url}`);
const code = await new Promise((resolve) => {
  const child = spawn(join(here, 'node_modules/.bin/artillery'), ['run', '--target', nginx.url, join(here, 'chat.yml')],
    { stdio: 'inherit', env: { ...process.env, ARTILLERY_DISABLE_TELEMETRY: 'true' } });
  child.once('exit', resolve);
});
await nginx.stop();
await Promise.all(servers.map((s) => s.stop()));
await redis.stop();
process.exit(code ?? 1);
