import assert from "node:assert/strict";
import probeNode from "../fixtures/probe-node";
import postgresDatabase from "../../src/nodes/postgres-database";
import { HttpClient } from "../../src/core/http/client";
import type { OAuthConnection } from "../../src/core/node/oauth-connection";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { DATABASE_KINDS, databaseNode, kindLabel } from "../support/databases";
import { eventually, nodeRed } from "../support/node-red";

const helper = nodeRed();

for (const kind of DATABASE_KINDS) describe(`OAuth connection of a config node (${kindLabel(kind)})`, () => {
  const sandbox = new Sandbox();
  let testDb: TestDatabase;
  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase();
  });
  after(async () => {
    await testDb.drop();
    await sandbox.close();
  });
  afterEach(() => helper.unload());

  const creds = (refreshToken?: string) => ({ cred: { clientId: GOTO_DEMO_CLIENT.clientId, clientSecret: GOTO_DEMO_CLIENT.clientSecret, ...(refreshToken ? { refreshToken } : {}) } });

  for (const store of ["file", "postgres"] as const) {
    it(`seeds its ${store} store from the credentials and keeps the chain across a redeploy`, async () => {
      const flow = [
        { id: "cred", type: "gw-probe-credentials", authHost: `${sandbox.url}/goto/auth`, store, database: "db" },
        { id: "db", ...databaseNode(kind, testDb) },
      ];
      const refresh = sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId);
      await helper.load([probeNode, postgresDatabase], flow, { ...creds(refresh), db: { user: "postgres" } });
      const connection: OAuthConnection = helper.getNode("cred").connection;
      const api = new HttpClient({ name: "GoTo", baseUrl: `${sandbox.url}/goto/api`, auth: connection });
      assert.equal((await api.json<{ accountKey: string }>({ path: "admin/rest/v1/me" })).accountKey, sandbox.goto.accountKey);
      await eventually(() => connection.state.state === "authorized", 2000, "the authorized state");
      await helper.unload();

      // A redeploy with the same credentials: the stored chain goes on, nothing is seeded again.
      sandbox.goto.oauth.revokeRefreshToken(refresh);
      const before = sandbox.server.counter("goto refresh");
      await helper.load([probeNode, postgresDatabase], flow, { ...creds(refresh), db: { user: "postgres" } });
      const again: OAuthConnection = helper.getNode("cred").connection;
      assert.ok(await again.getAccessToken());
      assert.equal(sandbox.server.counter("goto refresh"), before, "the stored access token was still good");
    });
  }

  it("says it needs authorization when it has no refresh token at all", async () => {
    await helper.load(probeNode, [{ id: "fresh", type: "gw-probe-credentials", authHost: `${sandbox.url}/goto/auth`, store: "file" }], { fresh: creds().cred });
    const connection: OAuthConnection = helper.getNode("fresh").connection;
    await eventually(() => connection.state.state === "needs-authorization", 2000, "needs-authorization");
    await assert.rejects(connection.getAccessToken(), /paste a refresh token or use Authorize in the gw-probe-credentials node 'fresh'/);
  });
});
