// Signs JWTs with node's crypto (no npm dependency): HS256 with a shared
// secret, RS256 and ES256 with a private key from generateKeyPairSync.
import { createHmac, sign } from 'node:crypto';

const b64url = (data) => Buffer.from(data).toString('base64url');
export const nowSec = () => Math.floor(Date.now() / 1000);

/** A compact JWS of `claims`; `key` is a secret string (HS256) or a KeyObject. */
export function signJwt(claims, { alg = 'HS256', key, kid } = {}) {
  const header = { alg, typ: 'JWT', ...(kid ? { kid } : {}) };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  let signature;
  if (alg === 'HS256') signature = createHmac('sha256', key).update(input).digest();
  else if (alg === 'RS256') signature = sign('sha256', Buffer.from(input), key);
  else if (alg === 'ES256') signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  else if (alg === 'none') signature = Buffer.alloc(0);
  else throw new Error(`unsupported alg ${alg}`);
  return `${input}.${b64url(signature)}`;
}
