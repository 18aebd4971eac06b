import assert from "node:assert/strict";
import { request } from "undici";
import { alwaysOn, disabled } from "../../src/sandbox/graph";
import { FaultMode } from "./proxy";
import { FaultRig, Neighbour, PROXY_FAULTS, describeFault } from "./harness";

const USERS = Array.from({ length: 12 }, (_, i) => `fault.watch.${i}@contoso.test`);

/**
 * The out-of-office monitor (graph-ooo-status, its watch list in PostgreSQL, each change posted
 * to the mediator) with Microsoft Graph or the database failing during a poll.
 */
describe("faults: out-of-office monitor", function () {
  this.timeout(180_000);
  let rig: FaultRig;
  let round = 0;
  /** Whether each user is out of office, as the sandbox now says. */
  const away = new Map<string, boolean>(USERS.map((u) => [u, false]));

  before(async () => {
    rig = await FaultRig.start({ pipelines: ["ooo"], database: "server", completions: ["ooo-monitor"] });
    for (const mail of USERS) rig.sandbox.graph.addUser({ mail, displayName: mail, replies: disabled() });
    await rig.inject("ooo-watch-demo", USERS);
    await rig.until((o) => (o.statuses["ooo-monitor"]?.fill === "green" && o.statuses["ooo-monitor"]?.text?.startsWith("12 watched")) || undefined, 60_000, "12 users watched");
    // Each user seen once before the tests: their first observations are not changes of a test.
    await pollAndWait();
    await rig.until((o) => USERS.every((m) => posts(o).has(m)) || undefined, 30_000, "every user's first observation");
  });
  beforeEach(async () => {
    if (await rig.revive()) await rig.until((o) => o.statuses["ooo-monitor"]?.text?.startsWith("12 watched") || undefined, 60_000, "12 users watched again");
  });
  // A test that failed mid-fault leaves no fault behind for the next.
  afterEach(async function () {
    await rig?.finish(this.currentTest);
    await rig?.healAll();
  });
  after(async () => rig?.stop());

  /** The mediator's posts since the last forget, by user. */
  function posts(o: { completed: Array<{ node: string; payload: unknown }> }): Map<string, string[]> {
    const byUser = new Map<string, string[]>();
    for (const c of o.completed.filter((c) => c.node === "ooo-mediator-debug")) {
      const p = c.payload as { email: string; status: string };
      byUser.set(p.email, [...(byUser.get(p.email) ?? []), p.status]);
    }
    return byUser;
  }

  async function pollAndWait(): Promise<void> {
    await rig.forgetCompletion("ooo-monitor");
    await rig.inject("ooo-poll-now");
    await rig.until((o) => o.completed.some((c) => c.node === "ooo-monitor") || undefined, 60_000, "the poll to end");
  }

  /**
   * Four users change their automatic replies, a poll runs during the fault, the next poll after
   * it: each change reaches the mediator once, and nothing else does.
   */
  async function pollThrough(neighbour: Neighbour, name: string, fault: (during: () => void) => Promise<number>): Promise<void> {
    rig.measure("ooo", neighbour, name);
    const changed = USERS.slice((round * 4) % 12, (round * 4) % 12 + 4);
    round++;
    for (const mail of changed) {
      away.set(mail, !away.get(mail));
      rig.sandbox.graph.setReplies(mail, away.get(mail) ? alwaysOn(`Away (${round})`) : disabled());
    }
    await rig.forget();
    const healed = await fault(() => void rig.inject("ooo-poll-now").catch(() => undefined));
    // The next poll (every minute, or Poll now) after the fault.
    await rig.until((o) => o.statuses["ooo-monitor"] !== undefined || undefined, 10_000, "a status");
    await rig.until(async () => {
      const o = await rig.observed();
      if (changed.every((m) => posts(o).has(m))) return true;
      await pollAndWait();
      return undefined;
    }, 30_000, "every change at the mediator");
    await rig.until((o) => (o.statuses["ooo-monitor"]?.fill === "green" && o.statuses["ooo-monitor"]?.text?.startsWith("12 watched")) || undefined, 30_000, "the monitor's status back to green");
    assert.ok(Date.now() - healed < 30_000, `recovered ${(Date.now() - healed) / 1000} s after the fault ended`);
    // One more poll finds nothing new.
    await pollAndWait();
    const seen = posts(await rig.observed());
    rig.note(healed, {
      lost: changed.filter((m) => !seen.has(m)).length,
      duplicated: [...seen].reduce((n, [m, list]) => n + (changed.includes(m) ? list.length - 1 : list.length), 0),
    });
    assert.deepEqual(
      Object.fromEntries([...seen].sort()),
      Object.fromEntries(changed.map((m) => [m, [away.get(m) ? "True" : "False"]]).sort()),
      "each change posted once, and nothing else",
    );
  }

  const proxyFault = (neighbour: Neighbour, mode: FaultMode) => (during: () => void) => rig.faultWindow(neighbour, mode, { during });

  for (const neighbour of ["microsoft", "postgres"] as const) {
    for (const mode of PROXY_FAULTS) {
      it(`${neighbour === "postgres" ? "keeps Node-RED up and " : ""}posts each change once when ${neighbour === "postgres" ? "PostgreSQL" : "Microsoft Graph"} ${describeFault(mode)} during a poll`, async () => {
        await pollThrough(neighbour, mode, proxyFault(neighbour, mode));
      });
    }
  }

  it("keeps Node-RED up and posts each change once when every database session is terminated during a poll", async () => {
    await pollThrough("postgres", "terminate", (during) => rig.terminateAll(during));
  });

  it("keeps Node-RED up and posts each change once across a database restart (refused, every connection reset)", async () => {
    await pollThrough("postgres", "restart", (during) => rig.restartDatabase(during));
  });

  it("answers POST /monitor promptly while Microsoft Graph swallows every byte", async () => {
    const token = await rig.tokenFor();
    let answer: Promise<{ status: number; ms: number }> | undefined;
    await rig.faultWindow("microsoft", "black-hole", {
      during: () => {
        const started = Date.now();
        answer = request(`${rig.red.url}/monitor`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-access-tokens": token },
          body: JSON.stringify({ email: USERS[0], status: "True" }),
          headersTimeout: 120_000,
        }).then(async (res) => (await res.body.dump(), { status: res.statusCode, ms: Date.now() - started }));
      },
    });
    const { status } = await answer!;
    assert.ok([200, 207, 503].includes(status), `answered ${status}`);
  });
});
