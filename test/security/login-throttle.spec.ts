import assert from "node:assert/strict";
import { generateSecret } from "../../src/auth/keys";
import { hashPassword } from "../../src/auth/users";
import { eventually } from "../support/node-red";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { loginFlow, login as tryLogin } from "../support/login";

function login(red: NodeRedProcess, path: string, username: string, password: string): Promise<number> {
  return tryLogin(`${red.url}${path}`, username, password);
}

describe("security: failed logins are limited across instances, key nodes and restarts", function () {
  this.timeout(240_000);
  let db: TestDatabase;
  let reds: NodeRedProcess[] = [];

  before(async () => {
    db = await createTestDatabase();
    const flow = loginFlow(db, generateSecret(), `demo:${await hashPassword("correct horse battery", 4)}`);
    reds = await Promise.all([startNodeRed(), startNodeRed()]);
    for (const red of reds) await red.deploy(flow);
    await flowsStarted();
  });

  /** The deploy answers before the flows run: wait for both endpoints (a try without a name is not counted). */
  async function flowsStarted(): Promise<void> {
    for (const red of reds) {
      for (const path of ["/login", "/login2"]) await eventually(async () => (await login(red, path, "", "")) === 401, 30_000, `${path} to start`);
    }
  }
  after(async () => {
    await Promise.all(reds.map((r) => r.stop()));
    await db?.drop();
  });

  it("lets at most the free tries through when 100 guesses arrive at once at two Node-RED processes, and refuses the right password after them", async () => {
    const started = Date.now();
    const guesses = Array.from({ length: 100 }, (_, i) => login(reds[i % 2]!, i % 4 < 2 ? "/login" : "/login2", "demo", `guess-${i}`));
    const statuses = await Promise.all(guesses);
    const elapsed = Date.now() - started;
    const checked = statuses.filter((s) => s === 401).length;
    // Three free failures and the fourth that starts the 1 s wait; each wait that ran out during
    // the burst (1 s, then 2 s, then 4 s) lets one more through.
    const waitsOver = elapsed < 1000 ? 0 : elapsed < 3000 ? 1 : elapsed < 7000 ? 2 : 3;
    assert.ok(checked <= 4 + waitsOver, `${checked} of 100 guesses reached the password check in ${elapsed} ms`);
    assert.equal(checked + statuses.filter((s) => s === 429).length, 100, `statuses: ${[...new Set(statuses)]}`);
    // The right password now waits too, on every instance and either key node. Under load the
    // burst can outlast its last wait: once that runs out, one more counted guess starts a wait of 2 s.
    await eventually(async () => (await login(reds[0]!, "/login", "demo", "one more guess")) === 401, 30_000, "the wait to run out");
    assert.equal(await login(reds[0]!, "/login", "demo", "correct horse battery"), 429);
    assert.equal(await login(reds[1]!, "/login2", "demo", "correct horse battery"), 429);
  });

  it("keeps the count over a restart", async () => {
    await reds[0]!.stop();
    reds[0] = await startNodeRed({ userDir: reds[0]!.userDir });
    await flowsStarted();
    // Once the wait has run out, a guess is counted; a count started afresh would allow three more failures.
    await eventually(async () => (await login(reds[0]!, "/login", "demo", "one more guess")) === 401, 30_000, "the wait to run out");
    assert.equal(await login(reds[0]!, "/login", "demo", "correct horse battery"), 429);
  });
});
