// A local OpenID Connect provider for the demo hub and the end-to-end tests (npm oidc-provider v9).
//
// Test identities come from a JSON file, re-read on every login, so tests can add identities while
// it runs:  {"alice": {"email": "alice@example.org", "email_verified": true, "groups": ["staff"]}}
// Any login/password is accepted by the built-in development login form; the login name becomes
// `sub` and the default `preferred_username`.
//
// Usage: node provider.mjs --port 9100 --identities ids.json
//          [--client-id ID --client-secret SECRET --redirect-uri URI]   (a static client, for the demo)
// Dynamic client registration (POST /reg) is open, so each test hub registers its own client.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string', default: '9100' },
    host: { type: 'string', default: '127.0.0.1' },
    identities: { type: 'string' },
    'client-id': { type: 'string' },
    'client-secret': { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true },
  },
});

function loadIdentities() {
  if (!args.identities) return {};
  try {
    return JSON.parse(readFileSync(args.identities, 'utf8'));
  } catch (err) {
    console.error(`identities: cannot read ${args.identities}: ${err.message}`);
    return {};
  }
}

const clients = [];
if (args['client-id']) {
  clients.push({
    client_id: args['client-id'],
    client_secret: args['client-secret'],
    redirect_uris: args['redirect-uri'] || [],
    token_endpoint_auth_method: 'client_secret_post',
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
  });
}

const issuer = `http://${args.host}:${args.port}`;
const provider = new Provider(issuer, {
  clients,
  cookies: { keys: ['jupyterhub-lab-ext-devtools-not-secret'] },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  features: {
    devInteractions: { enabled: true },
    registration: { enabled: true, initialAccessToken: false },
  },
  // Consent for the hub's client is given without asking after the first time per session.
  ttl: { Session: 3600, Interaction: 600, Grant: 3600, AccessToken: 3600, AuthorizationCode: 600 },
  async findAccount(ctx, sub) {
    const ident = loadIdentities()[sub] || {};
    return {
      accountId: sub,
      async claims() {
        return { preferred_username: sub, name: sub, ...ident, sub };
      },
    };
  },
});
provider.proxy = false;

const server = provider.listen(Number(args.port), args.host, () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
