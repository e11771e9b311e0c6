// A real OpenID provider for Weft's SSO tests: node's `oidc-provider` with
// test clients, test users and a login form a test drives with plain HTTP.
//
//   WEFT_IDP_NODE_MODULES=<dir>/node_modules node tests/idp/server.mjs [--port N] [--issuer URL]
//
// Port 0 (the default) picks a free one. When listening it prints one JSON
// line on stdout: {"issuer", "port", "client_key_pem"} (the private key of the
// `weft-pkjwt` client, which authenticates with private_key_jwt). It exits
// when its standard input closes, so a test process that dies takes it along.
//
// Clients (redirect URI https://weft.example.org/_synapse/client/oidc/callback,
// or Weft's callback on any port of 127.0.0.1 or localhost over http, as a test
// server listens; PKCE required, secrets "<client id>-secret"):
//   weft-basic   client_secret_basic, ID token RS256
//   weft-post    client_secret_post
//   weft-es256   client_secret_basic, ID token ES256
//   weft-eddsa   client_secret_basic, ID token EdDSA
//   weft-pkjwt   private_key_jwt (ES256)
//   weft-tamper-aud, -iss, -key, -none, -nonce, -exp: client_secret_basic;
//     the token endpoint's ID token is rewritten (another audience, another
//     issuer, signed with a key the provider does not publish under the same
//     kid, `alg: none`, another nonce, expired two hours ago; the last two
//     signed with the provider's own key), as a compromised, misconfigured
//     or replaying provider would answer.
// Users: alice / wonderland, bob / builder (see USERS).
//
// Login: GET /interaction/{uid} is a form; POST /interaction/{uid}/login with
// `username` and `password` logs in and grants the requested scopes at once
// (no consent page), answering 303 to the authorization resume URL.

import { generateKeyPairSync, sign } from 'node:crypto';
import { createServer } from 'node:http';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const at = args.indexOf(`--${name}`);
  return at >= 0 ? args[at + 1] : fallback;
};
const modules = process.env.WEFT_IDP_NODE_MODULES;
if (!modules) {
  console.error('WEFT_IDP_NODE_MODULES must name the node_modules directory `npm ci` filled (tests/run.sh does)');
  process.exit(2);
}
const resolve = createRequire(join(modules, 'package.json')).resolve;
const { default: Provider } = await import(pathToFileURL(resolve('oidc-provider')).href);

const REDIRECT_URI = 'https://weft.example.org/_synapse/client/oidc/callback';
const USERS = {
  alice: {
    password: 'wonderland',
    claims: {
      sub: 'alice-0001',
      preferred_username: 'Alice.Liddell',
      name: 'Alice Liddell',
      given_name: 'Alice',
      family_name: 'Liddell',
      email: 'alice@wonderland.example',
      email_verified: true,
      groups: ['staff', 'readers'],
    },
  },
  bob: {
    password: 'builder',
    claims: { sub: 'bob-0002', preferred_username: 'bob', name: 'Bob', email: 'bob@builders.example', email_verified: false, groups: ['guests'] },
  },
};
const bySub = Object.fromEntries(Object.values(USERS).map((user) => [user.claims.sub, user]));

const jwk = (pair, kid, alg) => ({ ...pair.privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' });
const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const ed = generateKeyPairSync('ed25519');
const rogue = generateKeyPairSync('rsa', { modulusLength: 2048 });
const clientKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });

const client = (id, extra = {}) => ({
  client_id: id,
  client_secret: `${id}-secret`,
  token_endpoint_auth_method: 'client_secret_basic',
  redirect_uris: [REDIRECT_URI],
  grant_types: ['authorization_code'],
  response_types: ['code'],
  ...extra,
});
const { kid: _kid, alg: _alg, use: _use, d: _d, ...clientPublic } = jwk(clientKey, 'client-1', 'ES256');
const clients = [
  client('weft-basic'),
  client('weft-post', { token_endpoint_auth_method: 'client_secret_post' }),
  client('weft-es256', { id_token_signed_response_alg: 'ES256' }),
  client('weft-eddsa', { id_token_signed_response_alg: 'EdDSA' }),
  client('weft-pkjwt', {
    client_secret: undefined,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: 'ES256',
    jwks: { keys: [{ ...clientPublic, kid: 'client-1', alg: 'ES256', use: 'sig' }] },
  }),
  client('weft-tamper-aud'),
  client('weft-tamper-iss'),
  client('weft-tamper-key'),
  client('weft-tamper-none'),
  client('weft-tamper-nonce'),
  client('weft-tamper-exp'),
];

const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
const unb64 = (part) => JSON.parse(Buffer.from(part, 'base64url').toString());
/** The ID token with `edit` applied, signed again (RS256) with `key`, or unsigned for `alg: none`. */
function resign(token, edit, key) {
  const [head, body] = token.split('.');
  const header = unb64(head);
  const payload = unb64(body);
  edit(header, payload);
  const input = `${b64(header)}.${b64(payload)}`;
  const signature = header.alg === 'none' ? '' : sign('sha256', Buffer.from(input), key).toString('base64url');
  return `${input}.${signature}`;
}
const TAMPER = {
  'weft-tamper-aud': (token) => resign(token, (_h, p) => { p.aud = 'someone-else'; }, rsa.privateKey),
  'weft-tamper-iss': (token) => resign(token, (_h, p) => { p.iss = 'https://evil.example'; }, rsa.privateKey),
  'weft-tamper-key': (token) => resign(token, () => {}, rogue.privateKey),
  'weft-tamper-none': (token) => resign(token, (h) => { h.alg = 'none'; }, null),
  'weft-tamper-nonce': (token) => resign(token, (_h, p) => { p.nonce = 'another-attempts-nonce'; }, rsa.privateKey),
  'weft-tamper-exp': (token) => resign(token, (_h, p) => { p.iat -= 7200; p.exp = p.iat + 600; }, rsa.privateKey),
};

const configuration = (issuer) => ({
  clients,
  jwks: { keys: [jwk(rsa, 'rsa-1', 'RS256'), jwk(ec, 'ec-1', 'ES256'), jwk(ed, 'ed-1', 'EdDSA')] },
  cookies: { keys: ['weft-test-idp-cookie-key'] },
  claims: {
    openid: ['sub'],
    profile: ['name', 'given_name', 'family_name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'profile', 'email', 'groups'],
  // Claims in the ID token too (as Keycloak, Google and others do), so a
  // plugin can map users from it without the userinfo endpoint.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, sub) {
    const user = bySub[sub];
    return user && { accountId: sub, claims: async () => ({ ...user.claims }) };
  },
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 600, Grant: 600 },
  renderError(ctx, out) {
    ctx.type = 'json';
    ctx.body = out;
  },
  issuer,
});

const readBody = (req) =>
  new Promise((done, fail) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { text += chunk; });
    req.on('end', () => done(text));
    req.on('error', fail);
  });

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const loginPage = (uid, clientId, error) => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in</title></head><body>
<h1>Sign in to ${escape(clientId)}</h1>
${error ? `<p role="alert">${escape(error)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<label>Username <input name="username" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Sign in</button>
</form></body></html>`;

/** Weft's callback on a test server's port, which changes from run to run. */
const LOOPBACK_CALLBACK = /^http:\/\/(127\.0\.0\.1|localhost):\d+\/_synapse\/client\/oidc\/callback$/;

/** The provider with the test login routes, and the tampering of the token endpoint. */
function provider(issuer) {
  const provider = new Provider(issuer, configuration(issuer));
  const registered = provider.Client.prototype.redirectUriAllowed;
  provider.Client.prototype.redirectUriAllowed = function allowed(uri) {
    return registered.call(this, uri) || LOOPBACK_CALLBACK.test(uri);
  };
  provider.use(async (ctx, next) => {
    const route = ctx.path.match(/^\/interaction\/([^/]+)(\/login)?$/);
    if (!route) {
      await next();
      const tamper = ctx.path === '/token' && ctx.body && ctx.body.id_token && TAMPER[ctx.oidc?.client?.clientId];
      if (tamper) ctx.body = { ...ctx.body, id_token: tamper(ctx.body.id_token) };
      return;
    }
    const details = await provider.interactionDetails(ctx.req, ctx.res);
    const clientId = details.params.client_id;
    if (ctx.method === 'GET' && !route[2]) {
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, clientId);
      return;
    }
    if (ctx.method !== 'POST' || !route[2]) {
      ctx.status = 405;
      return;
    }
    const form = new URLSearchParams(await readBody(ctx.req));
    const user = USERS[form.get('username')];
    if (!user || user.password !== form.get('password')) {
      ctx.status = 401;
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, clientId, 'Wrong username or password');
      return;
    }
    const grant = new provider.Grant({ accountId: user.claims.sub, clientId });
    grant.addOIDCScope(details.params.scope);
    const grantId = await grant.save();
    const result = { login: { accountId: user.claims.sub }, consent: { grantId } };
    const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
    ctx.status = 303;
    ctx.set('Location', to);
  });
  return provider;
}

// The issuer names the port, so the server listens first and the provider,
// made with the port it got, handles its requests from then on.
let handle = (_req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handle(req, res));
const port = await new Promise((ready) => {
  server.listen(Number(option('port', '0')), '127.0.0.1', () => ready(server.address().port));
});
const issuer = option('issuer', `http://127.0.0.1:${port}`);
handle = provider(issuer).callback();
const clientKeyPem = clientKey.privateKey.export({ format: 'pem', type: 'pkcs8' });
process.stdout.write(`${JSON.stringify({ issuer, port, client_key_pem: clientKeyPem })}\n`);

const stop = () => server.close(() => process.exit(0));
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
