// A real OpenID Connect provider for Bastion's federation tests: panva/oidc-provider
// (OpenID Certified), on 127.0.0.1 only, with its development sign-in pages.
//
//   node tests/idp/provider.mjs --port 4000 --redirect-uri http://127.0.0.1:8080/oauth/federate/idp/callback
//
// One confidential client ("bastion", secret "bastion-test-secret", client_secret_basic, PKCE
// required) and three people. The dev sign-in page takes any password; the login name picks the
// account. Signing keys are made fresh at each start, so nothing secret lives in the repository.
// Prints "listening <issuer>" once it accepts connections.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    'redirect-uri': { type: 'string', multiple: true, default: [] },
    'client-id': { type: 'string', default: 'bastion' },
    'client-secret': { type: 'string', default: 'bastion-test-secret' },
  },
});
const port = Number.parseInt(values.port ?? '', 10);
if (!Number.isInteger(port) || port <= 0 || values['redirect-uri'].length === 0) {
  console.error('usage: provider.mjs --port PORT --redirect-uri URI [--redirect-uri URI ...]');
  process.exit(2);
}

// Login name -> the claims released about that person ("sub" is the login name itself).
const ACCOUNTS = {
  alice: { preferred_username: 'alice.smith', name: 'Alice Smith', groups: ['engineering', 'mcp-admins', 'staff'] },
  bob: { preferred_username: 'bob', name: 'Bob Jones', groups: ['staff'] },
  carol: { preferred_username: 'carol', name: 'Carol Diaz', groups: ['contractors'] },
  dana: { preferred_username: 'dana', name: 'Dana Lee', groups: ['operations'] },
};

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-rs256', use: 'sig', alg: 'RS256' };

const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: values['client-id'],
      client_secret: values['client-secret'],
      redirect_uris: values['redirect-uri'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'profile', 'groups'],
  claims: { openid: ['sub'], profile: ['preferred_username', 'name'], groups: ['groups'] },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  async findAccount(_ctx, id) {
    const account = ACCOUNTS[id];
    if (account === undefined) {
      return undefined;
    }
    return { accountId: id, claims: async () => ({ sub: id, ...account }) };
  },
});

// Quiet: the dev-only warnings go to stderr; errors a test needs to see stay there too.
provider.on('server_error', (_ctx, error) => console.error('server_error', error));

// SIGTERM (the test's teardown) ends the process at once: nothing here needs saving.
provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
