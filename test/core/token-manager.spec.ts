import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { Database } from "../../src/core/db/database";
import { AuthorizationRequiredError } from "../../src/core/errors";
import { HttpClient } from "../../src/core/http/client";
import { TokenStore } from "../../src/core/tokens/types";
import { GOTO_DEMO_CLIENT, Sandbox, TEAMLEADER_DEMO_CLIENT } from "../../src/sandbox";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { openDatabase } from "../support/databases";
import { fileStore, manager, postgresStore } from "../support/tokens";

describe("OAuth token core", () => {
  const sandbox = new Sandbox({ goto: { rotateEvery: 3 } });
  let testDb: TestDatabase;
  let db: Database;
  let embedded: { db: Database; drop(): Promise<void> };

  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase();
    db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
    embedded = await openDatabase("embedded");
  });
  after(async () => {
    await db.close();
    await embedded.drop();
    await testDb.drop();
    await sandbox.close();
  });
  beforeEach(() => {
    sandbox.server.resetStats();
    sandbox.server.clearFaults();
    sandbox.goto.oauth.accessTokenLifetime = 3600;
    sandbox.teamleader.oauth.accessTokenLifetime = 3600;
  });

  const stores: Array<[string, () => TokenStore]> = [
    ["file store", () => fileStore()],
    ["PostgreSQL store", () => postgresStore(db, `secret-${Math.random()}`)],
    ["PostgreSQL store on the embedded server", () => postgresStore(embedded.db, `secret-${Math.random()}`)],
  ];

  for (const [storeName, makeStore] of stores) {
    describe(`with the ${storeName}`, () => {
      it("makes exactly one refresh request for 100 concurrent callers on an expired token", async () => {
        const tokens = manager({ provider: "teamleader", sandboxUrl: sandbox.url, store: makeStore(), ...TEAMLEADER_DEMO_CLIENT, key: `k-${Math.random()}` });
        await tokens.seed(sandbox.teamleader.oauth.issueRefreshToken(TEAMLEADER_DEMO_CLIENT.clientId));
        const results = await Promise.all(Array.from({ length: 100 }, () => tokens.getAccessToken()));
        assert.equal(new Set(results).size, 1);
        assert.equal(sandbox.server.counter("teamleader refresh"), 1);
        assert.equal(sandbox.server.counter("teamleader refresh reused"), 0);
      });

      it("keeps a rotated refresh token, so the next refresh after expiry works", async () => {
        const store = makeStore();
        const key = `k-${Math.random()}`;
        const first = manager({ provider: "teamleader", sandboxUrl: sandbox.url, store, ...TEAMLEADER_DEMO_CLIENT, key });
        await first.seed(sandbox.teamleader.oauth.issueRefreshToken(TEAMLEADER_DEMO_CLIENT.clientId));
        await first.getAccessToken();
        // a new process (a new manager) after the access token expired: it must use the rotated token
        sandbox.teamleader.oauth.expireAccessTokens();
        const stored = await store.read(key);
        stored!.refreshAt = 0;
        await store.update(key, async () => ({ next: stored!, result: undefined }));
        const second = manager({ provider: "teamleader", sandboxUrl: sandbox.url, store, ...TEAMLEADER_DEMO_CLIENT, key });
        await second.getAccessToken();
        assert.equal(sandbox.server.counter("teamleader refresh"), 2);
        assert.equal(sandbox.server.counter("teamleader refresh reused"), 0);
      });

      it("keeps the old GoTo refresh token when the provider sends none, and the new one when it rotates", async () => {
        sandbox.goto.oauth.accessTokenLifetime = 1;
        const store = makeStore();
        const key = `k-${Math.random()}`;
        const tokens = manager({ provider: "goto", sandboxUrl: sandbox.url, store, ...GOTO_DEMO_CLIENT, key });
        const original = sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId);
        await tokens.seed(original);
        for (let i = 0; i < 4; i++) {
          await tokens.invalidate(await tokens.getAccessToken());
        }
        assert.ok(sandbox.server.counter("goto refresh rotated") >= 1);
        assert.equal(sandbox.server.counter("goto refresh reused"), 0);
        const record = await store.read(key);
        assert.ok(record?.refreshToken && record.refreshToken !== original);
        assert.equal(record.extra.principal, "admin@example.com");
      });

      it("moves to 'needs authorization' on a refused refresh token and stops asking the provider", async () => {
        const tokens = manager({ provider: "teamleader", sandboxUrl: sandbox.url, store: makeStore(), ...TEAMLEADER_DEMO_CLIENT, key: `k-${Math.random()}` });
        const states: string[] = [];
        tokens.on("state", (e: { state: string }) => states.push(e.state));
        const refresh = sandbox.teamleader.oauth.issueRefreshToken(TEAMLEADER_DEMO_CLIENT.clientId);
        sandbox.teamleader.oauth.revokeRefreshToken(refresh);
        await tokens.seed(refresh);
        for (let i = 0; i < 3; i++) {
          await assert.rejects(tokens.getAccessToken(), (err: Error) => {
            assert.ok(err instanceof AuthorizationRequiredError);
            assert.match(err.message, /Teamleader refused the refresh token: authorize again in the teamleader-connection node/);
            return true;
          });
        }
        assert.equal(sandbox.server.counter("teamleader refresh"), 1);
        assert.deepEqual(states, ["authorized", "needs-authorization"]);
        assert.equal((await tokens.state())?.state, "needs-authorization");
      });

      it("starts again from a newly pasted refresh token after needing authorization", async () => {
        const tokens = manager({ provider: "teamleader", sandboxUrl: sandbox.url, store: makeStore(), ...TEAMLEADER_DEMO_CLIENT, key: `k-${Math.random()}` });
        const dead = sandbox.teamleader.oauth.issueRefreshToken(TEAMLEADER_DEMO_CLIENT.clientId);
        sandbox.teamleader.oauth.revokeRefreshToken(dead);
        await tokens.seed(dead);
        await assert.rejects(tokens.getAccessToken(), AuthorizationRequiredError);
        assert.equal(await tokens.seed(dead), false, "the same token again changes nothing");
        assert.equal(await tokens.seed(sandbox.teamleader.oauth.issueRefreshToken(TEAMLEADER_DEMO_CLIENT.clientId)), true);
        assert.ok(await tokens.getAccessToken());
      });

      it("refreshes once when an API answers 401, and the API call succeeds", async () => {
        const tokens = manager({ provider: "goto", sandboxUrl: sandbox.url, store: makeStore(), ...GOTO_DEMO_CLIENT, key: `k-${Math.random()}` });
        await tokens.seed(sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId));
        const api = new HttpClient({ name: "GoTo", baseUrl: `${sandbox.url}/goto/api`, auth: tokens });
        await api.json({ path: "admin/rest/v1/me" });
        sandbox.goto.oauth.expireAccessTokens(); // revoked early, before the manager expected
        const me = await api.json<{ accountKey: string }>({ path: "admin/rest/v1/me" });
        assert.equal(me.accountKey, sandbox.goto.accountKey);
        assert.equal(sandbox.server.counter("goto refresh"), 2);
        assert.equal(sandbox.server.counter("goto api 401"), 1);
      });

      it("says a client secret is wrong instead of asking for a new authorization", async () => {
        const tokens = manager({ provider: "goto", sandboxUrl: sandbox.url, store: makeStore(), clientId: GOTO_DEMO_CLIENT.clientId, clientSecret: "wrong-secret-value", key: `k-${Math.random()}` });
        await tokens.seed(sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId));
        await assert.rejects(tokens.getAccessToken(), /GoTo refused the client id or secret: check them in the goto-credentials node/);
        assert.notEqual((await tokens.state())?.state, "needs-authorization");
      });
    });
  }

  it("seals the file store: no token appears in the file", async () => {
    const store = fileStore();
    const tokens = manager({ provider: "goto", sandboxUrl: sandbox.url, store, ...GOTO_DEMO_CLIENT, key: "sealed" });
    const refresh = sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId);
    await tokens.seed(refresh);
    const access = await tokens.getAccessToken();
    const dir = (store as unknown as { dir: string }).dir;
    for (const file of readdirSync(dir)) {
      const content = readFileSync(`${dir}/${file}`, "utf8");
      assert.ok(!content.includes(refresh) && !content.includes(access), `${file} holds a token in clear`);
    }
  });

  it("seals the PostgreSQL store: no token appears in the table", async () => {
    const tokens = manager({ provider: "goto", sandboxUrl: sandbox.url, store: postgresStore(db, "client-secret-x"), ...GOTO_DEMO_CLIENT, key: "sealed-pg" });
    const refresh = sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId);
    await tokens.seed(refresh);
    const access = await tokens.getAccessToken();
    const { rows } = await db.query("SELECT * FROM gluework_oauth_tokens WHERE token_key = 'sealed-pg'");
    const dump = JSON.stringify(rows);
    assert.ok(!dump.includes(refresh) && !dump.includes(access));
  });
});
