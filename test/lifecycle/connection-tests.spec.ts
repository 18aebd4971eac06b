import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { BlobServiceClient } from "@azure/storage-blob";
import pg from "pg";
import azureStorageAccount from "../../src/nodes/azure-storage-account";
import gotoCredentials from "../../src/nodes/goto-credentials";
import graphApp from "../../src/nodes/graph-app";
import jwtAuthKey from "../../src/nodes/jwt-auth-key";
import postgresDatabase from "../../src/nodes/postgres-database";
import smtpConnection from "../../src/nodes/smtp-connection";
import teamleaderConnection from "../../src/nodes/teamleader-connection";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { AZURITE_ACCOUNT, Azurite } from "../../src/sandbox/azurite";
import { SmtpSink } from "../../src/sandbox/smtp-sink";
import { expectLine, testConnection } from "../checks/report";
import { nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { sandboxClient } from "../support/teamleader";
import { selfSignedCertificate } from "../support/tls";

const helper = nodeRed();
const LOGIN = { user: "relay", pass: "relay-password-123" };
const PLACEHOLDER = "__PWRD__";

describe("lifecycle: Test connection writes nothing and spends no refresh token, deployed or not", function () {
  this.timeout(120_000);
  const sandbox = new Sandbox({ goto: { rotateEvery: 1 } });
  const azurite = new Azurite();
  const sink = new SmtpSink({ tls: selfSignedCertificate(), auth: LOGIN });
  const tenantId = "00000000-0000-4000-8000-00000000l1fe";
  let testDb: TestDatabase;
  let smtpPort: number;
  const clients: Record<"gotoFile" | "gotoPg" | "tl", { clientId: string; clientSecret: string; refreshToken: string }> = {} as never;
  const app = { clientId: randomUUID(), clientSecret: `secret-${randomUUID()}` };

  const configs = () => ({
    db: { type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable" },
    gotoFile: { type: "goto-credentials", name: "Main file", authHost: `${sandbox.url}/goto/auth`, apiHost: `${sandbox.url}/goto/api`, redirectUri: "http://127.0.0.1:1880/cb", store: "file" },
    gotoPg: { type: "goto-credentials", name: "Main pg", authHost: `${sandbox.url}/goto/auth`, apiHost: `${sandbox.url}/goto/api`, redirectUri: "http://127.0.0.1:1880/cb", store: "postgres", database: "db" },
    tl: { type: "teamleader-connection", name: "Focus", redirectUri: "http://127.0.0.1:1880/tl", authHost: `${sandbox.url}/teamleader/auth`, apiHost: `${sandbox.url}/teamleader/api`, database: "db" },
    graph: { type: "graph-app", tenantId, clientId: app.clientId, authType: "secret", authorityHost: sandbox.url, graphUrl: `${sandbox.url}/microsoft/graph` },
    smtp: { type: "smtp-connection", host: "127.0.0.1", port: String(smtpPort), security: "starttls", verifyCertificate: false, auth: "password", sender: "desk@example.com" },
    jwt: { type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api" },
    storage: { type: "azure-storage-account", auth: "key", accountName: AZURITE_ACCOUNT.name, endpoint: azurite.blobUrl },
  });
  type Id = keyof ReturnType<typeof configs>;
  const secrets = (): Record<Id, Record<string, string>> => ({
    db: { user: "postgres" },
    gotoFile: clients.gotoFile,
    gotoPg: clients.gotoPg,
    tl: clients.tl,
    graph: { clientSecret: app.clientSecret },
    smtp: { user: LOGIN.user, password: LOGIN.pass },
    jwt: { secret: "a-jwt-secret-of-thirty-two-bytes-or-more-0123456789" },
    storage: { accountKey: AZURITE_ACCOUNT.key },
  });

  before(async () => {
    await sandbox.listen();
    await azurite.start();
    await BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient("existing").createIfNotExists();
    smtpPort = await sink.listen();
    testDb = await createTestDatabase("gw_ctest");
    sandbox.microsoft.registerApp(tenantId, app.clientId, app.clientSecret);
    for (const id of ["gotoFile", "gotoPg"] as const) {
      const c = { clientId: `goto-life-${id}-${randomUUID().slice(0, 8)}`, clientSecret: GOTO_DEMO_CLIENT.clientSecret };
      sandbox.goto.oauth.registerClient(c.clientId, c.clientSecret);
      clients[id] = { ...c, refreshToken: sandbox.goto.oauth.issueRefreshToken(c.clientId) };
    }
    const tl = sandboxClient(sandbox);
    clients.tl = { ...tl, refreshToken: sandbox.teamleader.oauth.issueRefreshToken(tl.clientId) };
    const flow = Object.entries(configs()).map(([id, c]) => ({ id, ...c }));
    await helper.load([postgresDatabase, gotoCredentials, teamleaderConnection, graphApp, smtpConnection, jwtAuthKey, azureStorageAccount], flow, secrets());
    // The deployed nodes work as in production: each OAuth chain holds a current access token.
    await (helper.getNode("gotoFile") as any).connection.getAccessToken();
    await (helper.getNode("gotoPg") as any).connection.getAccessToken();
    await (helper.getNode("tl") as any).connection.oauth.getAccessToken();
  });
  after(async () => {
    await helper.unload();
    await sandbox.close();
    await azurite.stop();
    await sink.close();
    await testDb.drop();
  });

  /** Everything a test could change: the token files, the token table, each node's credentials, and refreshes at the providers. */
  async function snapshot(): Promise<string> {
    const dir = path.join(String((helper as any)._settings.userDir), "gluework", "tokens");
    const files = existsSync(dir) ? readdirSync(dir).sort().map((f) => [f, readFileSync(path.join(dir, f)).toString("base64")]) : [];
    const client = new pg.Client(testDb.connection);
    await client.connect();
    let rows: unknown[] = [];
    try {
      rows = (await client.query("SELECT token_key, sealed, state, version, expires_at::text, updated_at::text FROM gluework_oauth_tokens ORDER BY token_key")).rows;
    } finally {
      await client.end();
    }
    const credentials = Object.keys(configs()).map((id) => [id, (helper as any)._RED.nodes.getCredentials(id)]);
    const refreshes = ["goto refresh", "teamleader refresh"].map((c) => [c, sandbox.server.counter(c)]);
    return JSON.stringify({ files, rows, credentials, refreshes });
  }

  /** Presses Test connection, deployed (this id) or from a new node's dialog, and checks that nothing changed. */
  async function unchangedBy(id: Id, deployed: boolean, credentials: Record<string, string>, options: Record<string, string> = {}) {
    const before = await snapshot();
    const report = await testConnection(configs()[id].type, { id: deployed ? id : `new-${randomUUID().slice(0, 8)}`, config: configs()[id], credentials, options });
    assert.equal(await snapshot(), before, `the test of ${id} (${deployed ? "deployed" : "new"}) changed a stored credential or token: ${JSON.stringify(report.checks)}`);
    return report;
  }

  const placeholders = (id: Id) => Object.fromEntries(Object.entries(secrets()[id]).map(([k, v]) => [k, k === "clientId" || k === "user" ? v : PLACEHOLDER]));
  const wrong = (id: Id) => Object.fromEntries(Object.entries(secrets()[id]).map(([k, v]) => [k, k === "clientId" || k === "user" || k === "refreshToken" ? v : `wrong-${v.slice(0, 4)}-0123456789012345678901234567890`]));

  for (const deployed of [true, false]) {
    const where = deployed ? "the deployed node" : "a new node's dialog";
    for (const id of ["db", "graph", "smtp", "jwt", "storage"] as Id[]) {
      const options: Record<string, string> = id === "storage" ? { container: "existing" } : {};
      it(`${id}: right and wrong secrets typed in ${where} leave every stored credential as it was`, async () => {
        const right = await unchangedBy(id, deployed, secrets()[id], options);
        assert.equal(right.ok, true, JSON.stringify(right.checks));
        if (deployed) assert.equal((await unchangedBy(id, deployed, placeholders(id), options)).ok, true);
        const refused = await unchangedBy(id, deployed, id === "db" ? { url: `postgres://postgres@127.0.0.1:5432/${testDb.name}_absent` } : wrong(id), options);
        assert.equal(refused.ok, false, JSON.stringify(refused.checks));
      });
    }

    for (const id of ["gotoFile", "gotoPg", "tl"] as Id[]) {
      const token = id === "tl" ? "token through the shared chain" : "token from the refresh token";
      const issue = () => (id === "tl" ? sandbox.teamleader.oauth.issueRefreshToken(clients.tl.clientId) : sandbox.goto.oauth.issueRefreshToken(clients[id as "gotoFile"].clientId));
      it(`${id}: a typed refresh token (right or a typo), a wrong secret and the stored chain, tested from ${where}, leave the chain and the credentials as they were`, async () => {
        const fresh = issue();
        for (const refreshToken of [fresh, `${fresh.slice(0, -2)}xx`]) {
          const report = await unchangedBy(id, deployed, { ...placeholders(id), clientSecret: clients[id as "tl"].clientSecret, refreshToken });
          expectLine(report, token, "skipped", /would spend it[\s\S]*Authorize/);
        }
        const refused = await unchangedBy(id, deployed, wrong(id));
        expectLine(refused, "client id and secret", "failed", /refused the client id or secret/);
        const stored = await unchangedBy(id, deployed, deployed ? placeholders(id) : { clientId: clients[id as "tl"].clientId, clientSecret: clients[id as "tl"].clientSecret });
        if (deployed) {
          expectLine(stored, token, "passed");
          assert.equal(stored.ok, true, JSON.stringify(stored.checks));
        } else {
          expectLine(stored, token, "skipped", /Authorize/);
        }
      });
    }
  }

  it("the deployed chains still work after all the tests", async () => {
    const tokens = (id: Id) => (id === "tl" ? (helper.getNode(id) as any).connection.oauth : (helper.getNode(id) as any).connection);
    for (const id of ["gotoFile", "gotoPg", "tl"] as Id[]) {
      const manager = await tokens(id).tokens();
      const current = await manager.getAccessToken();
      assert.ok(await manager.invalidate(current), `${id} refreshed its own chain`);
    }
  });
});
