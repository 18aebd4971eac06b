import assert from "node:assert/strict";
import pg from "pg";
import { request } from "undici";
import { Sandbox } from "../../src/sandbox";
import { eventually } from "../support/node-red";
import { DeploymentType, NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { sandboxClient } from "../support/teamleader";

const COMPANIES = 3000;

describe("lifecycle: a Teamleader sync interrupted by a deploy ends with every row once and its token chain whole", function () {
  this.timeout(240_000);
  const sandbox = new Sandbox();
  let testDb: TestDatabase;
  let red: NodeRedProcess | undefined;

  before(() => sandbox.listen());
  after(() => sandbox.close());
  beforeEach(async () => {
    testDb = await createTestDatabase("gw_life_tl");
    sandbox.server.resetStats();
    sandbox.teamleader.data.reset({ companies: COMPANIES });
    sandbox.teamleader.latencyMs = 20;
  });
  afterEach(async () => {
    await red?.stop();
    red = undefined;
    await testDb.drop();
  });

  function syncFlow(client: { clientId: string; clientSecret: string; refreshToken: string }, dbName = "platform"): unknown[] {
    return [
      { id: "tab", type: "tab", label: "teamleader" },
      { id: "db", type: "postgres-database", name: dbName, mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "4", credentials: { user: "postgres" } },
      {
        id: "conn",
        type: "teamleader-connection",
        name: "Focus",
        database: "db",
        redirectUri: "http://127.0.0.1:1880/teamleader/oauth",
        authHost: `${sandbox.url}/teamleader/auth`,
        apiHost: `${sandbox.url}/teamleader/api`,
        credentials: client,
      },
      { id: "in", type: "http in", z: "tab", url: "/sync", method: "post", wires: [["query"]] },
      { id: "query", type: "teamleader-query", z: "tab", connection: "conn", mode: "sync", resources: "companies", syncMode: "full", tablePrefix: "life_", wires: [["res"]] },
      { id: "res", type: "http response", z: "tab", wires: [] },
    ];
  }

  async function rows(): Promise<{ total: number; distinct: number }> {
    const client = new pg.Client(testDb.connection);
    await client.connect();
    try {
      const { rows } = await client.query("SELECT count(*)::int AS total, count(DISTINCT id)::int AS distinct FROM life_companies");
      return rows[0];
    } catch {
      return { total: 0, distinct: 0 }; // no table yet
    } finally {
      await client.end();
    }
  }

  /** Runs a sync through the flow and waits for its answer; a 404 is the route not there yet. */
  async function syncOnce(target: NodeRedProcess, signal?: AbortSignal): Promise<number> {
    return eventually(async () => {
      if (signal?.aborted) return -1; // no answer wanted any more
      const res = await request(`${target.url}/sync`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}", headersTimeout: 120_000, bodyTimeout: 120_000, signal });
      await res.body.dump();
      return res.statusCode === 404 ? undefined : res.statusCode;
    }, 120_000, "a sync's answer");
  }

  for (const kind of ["full", "flows", "nodes"] as DeploymentType[]) {
    it(`a ${kind} deploy mid-sync, then a sync, leaves ${COMPANIES} companies once each, no refresh token spent twice`, async () => {
      const client = sandboxClient(sandbox);
      const creds = { ...client, refreshToken: sandbox.teamleader.oauth.issueRefreshToken(client.clientId) };
      red = await startNodeRed();
      await red.deploy(syncFlow(creds));
      const gone = new AbortController(); // the deploy ends the flow that would answer this request
      const interrupted = syncOnce(red, gone.signal).catch(() => 0);
      await eventually(async () => (await rows()).total >= 200, 120_000, "the sync to be writing");
      await red.deploy(syncFlow(creds, kind === "full" ? "platform" : "platform (renamed)"), kind);
      gone.abort();
      await interrupted;
      assert.equal(await syncOnce(red), 200);
      const got = await rows();
      if (process.env.COUNTS) console.log(`teamleader ${kind}: ${got.total} rows (${got.distinct} distinct) for ${COMPANIES}`);
      assert.deepEqual(got, { total: COMPANIES, distinct: COMPANIES });
      assert.equal(sandbox.server.counter("teamleader refresh reused"), 0, "a spent refresh token was sent again");
      assert.equal(sandbox.teamleader.oauth.liveRefreshTokens(client.clientId), 1, "the chain forked or was lost");
    });
  }
});
