import assert from "node:assert/strict";
import { Database } from "../../src/core/db/database";
import { Sandbox } from "../../src/sandbox";
import { TeamleaderApi, integrationLimiter } from "../../src/teamleader/api";
import { openDatabase, sandboxTokens } from "../support/teamleader";

describe("Teamleader API under 429s", function () {
  this.timeout(120_000);
  const sandbox = new Sandbox();
  let db: Database;
  let drop: () => Promise<void>;
  let api: TeamleaderApi;
  /** The waits the client logged, in ms: what it decided after each 429. */
  let waits: number[];

  before(async () => {
    await sandbox.listen();
    ({ db, drop } = await openDatabase("server"));
    api = new TeamleaderApi({
      apiHost: `${sandbox.url}/teamleader/api`,
      auth: await sandboxTokens(sandbox, db),
      limiter: integrationLimiter(`api-spec-${process.pid}`),
      log: (line) => {
        const wait = /rate limited: waiting (\d+) ms/.exec(line);
        if (wait) waits.push(Number(wait[1]));
      },
    });
  });
  after(async () => {
    await api.close();
    await drop();
    await sandbox.close();
  });
  beforeEach(() => {
    waits = [];
    sandbox.teamleader.throttle = undefined;
    sandbox.teamleader.throttled.length = 0;
    sandbox.teamleader.requestTimes.length = 0;
  });

  it("follows nine resets 0.1 s ahead as stated, each retry at its reset, and gets its answer", async () => {
    sandbox.teamleader.throttle = { times: 9, resetInMs: 100 };
    const { body } = await api.call<{ data: { email: string } }>("users.me");
    assert.equal(body.data.email, "admin@example.com");
    const refusals = sandbox.teamleader.throttled;
    assert.equal(refusals.length, 9);
    assert.equal(waits.length, 9);
    assert.ok(waits.every((w) => w <= 100), `waits of at most the 100 ms stated, not a backoff of its own: ${waits.join(", ")}`);
    const arrivals = [...refusals.slice(1).map((r) => r.at), sandbox.teamleader.requestTimes.at(-1)!];
    // Timers and Date.now() may part by a millisecond.
    arrivals.forEach((at, i) => assert.ok(at >= refusals[i]!.resetAt! - 2, `request ${i + 2} came ${refusals[i]!.resetAt! - at} ms before the reset`));
  });

  it("follows a Retry-After as stated, though its own backoff would wait longer", async () => {
    sandbox.teamleader.throttle = { times: 2, resetInMs: null, retryAfterS: 0.2 };
    await api.call("users.me");
    assert.deepEqual(waits, [200, 200]);
  });

  it("backs off on its own, growing, only when the server states no wait", async () => {
    sandbox.teamleader.throttle = { times: 3, resetInMs: null };
    await api.call("users.me");
    assert.equal(waits.length, 3);
    // Full jitter over 500 ms · 2^n: [250, 500], [500, 1000], [1000, 2000].
    waits.forEach((w, n) => assert.ok(w >= 250 * 2 ** n && w <= 500 * 2 ** n, `wait ${n + 1} of ${w} ms`));
  });
});
