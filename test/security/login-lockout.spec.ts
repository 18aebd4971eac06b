import assert from "node:assert/strict";
import { Agent } from "undici";
import { generateSecret } from "../../src/auth/keys";
import { hashPassword } from "../../src/auth/users";
import { eventually } from "../support/node-red";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { login, loginFlow } from "../support/login";

const PASSWORD = "correct horse battery";

interface Attack {
  /** Every guess's status, once all are answered. */
  statuses: Promise<number[]>;
  /** Settles when a guess is first refused with 429 (or the attack ends): the throttle is on. */
  refused: Promise<unknown>;
}

/** Wrong guesses for `username` every 100 ms for `ms`, each with the request options `options` gives. */
function guessEvery100ms(url: string, username: string, ms: number, options: (i: number) => Parameters<typeof login>[3] = () => ({})): Attack {
  let onRefused!: () => void;
  const refused = new Promise<void>((resolve) => (onRefused = resolve));
  const statuses = (async () => {
    const started = Date.now();
    const answers: Promise<number>[] = [];
    for (let i = 0; Date.now() - started < ms; i++) {
      answers.push(login(url, username, `guess-${i}`, options(i)).then((status) => (status === 429 && onRefused(), status)));
      await new Promise((r) => setTimeout(r, Math.max(0, started + (i + 1) * 100 - Date.now())));
    }
    return Promise.all(answers);
  })().finally(onRefused);
  return { statuses, refused };
}

/**
 * The real user's tries, one every `everyMs` from when the guesser is first refused until the
 * attack ends: "in" for each that got in within 2 s, else what happened.
 */
async function triesDuring(attack: Attack, everyMs: number, tryOnce: () => Promise<number>): Promise<string[]> {
  let over = false;
  const ended = attack.statuses.then(
    () => (over = true),
    () => (over = true),
  );
  await attack.refused;
  const results: string[] = [];
  while (!over) {
    const started = Date.now();
    const status = await tryOnce();
    const took = Date.now() - started;
    results.push(status === 200 && took < 2000 ? "in" : `status ${status} after ${took} ms`);
    await Promise.race([ended, new Promise((r) => setTimeout(r, Math.max(0, everyMs - took)))]);
  }
  return results;
}

describe("security: a guesser cannot lock a user out", function () {
  this.timeout(300_000);
  let db: TestDatabase;
  // Node-RED reached directly, and Node-RED behind a proxy on loopback that it trusts.
  let direct: NodeRedProcess;
  let proxied: NodeRedProcess;
  const fromSecondAddress = new Agent({ localAddress: "127.0.0.2" });

  before(async () => {
    db = await createTestDatabase();
    const users = await Promise.all(["demo", "alice", "bob", "carol", "erin"].map(async (name) => `${name}:${await hashPassword(PASSWORD, 4)}`));
    // One after the other: should the second not start, `after` still stops the first.
    direct = await startNodeRed();
    proxied = await startNodeRed({ env: { NODE_RED_TRUST_PROXY: "loopback" } });
    await direct.deploy(loginFlow(db, generateSecret(), users.join("\n")));
    await proxied.deploy(loginFlow(undefined, generateSecret(), users.join("\n")));
    // The deploy answers before the flows run (a try without a name is not counted).
    for (const red of [direct, proxied]) await eventually(async () => (await login(`${red.url}/login`, "", "")) === 401, 30_000, "the login endpoint to start");
  });
  after(async () => {
    await fromSecondAddress.close();
    await Promise.all([direct?.stop(), proxied?.stop()]);
    await db?.drop();
  });

  it("lets the real user in within 2 s at every try while another address guesses the password every 100 ms for 70 s", async () => {
    const attack = guessEvery100ms(`${direct.url}/login`, "demo", 70_000);
    const tries = await triesDuring(attack, 5000, () => login(`${direct.url}/login`, "demo", PASSWORD, { dispatcher: fromSecondAddress }));
    const guesses = await attack.statuses;
    assert.ok(tries.length >= 13, `${tries.length} tries`);
    assert.deepEqual(tries.filter((t) => t !== "in"), [], `the real user's tries: ${tries.join(", ")}`);
    // The guesser is still slowed: three free tries, then waits of 1, 2, 4 … up to 60 s.
    const checked = guesses.filter((s) => s === 401).length;
    assert.ok(checked <= 12, `${checked} of ${guesses.length} guesses reached the password check`);
    assert.equal(checked + guesses.filter((s) => s === 429).length, guesses.length);
  });

  it("behind a trusted proxy, counts the address the proxy saw, however the guesser fills X-Forwarded-For, and lets the real user in", async () => {
    const attack = guessEvery100ms(`${proxied.url}/login`, "alice", 10_000, (i) => ({ headers: { "x-forwarded-for": `10.9.${i % 250}.${i % 7}, 203.0.113.7` } }));
    const tries = await triesDuring(attack, 1000, () => login(`${proxied.url}/login`, "alice", PASSWORD, { headers: { "x-forwarded-for": "198.51.100.2" } }));
    const guesses = await attack.statuses;
    assert.deepEqual(tries.filter((t) => t !== "in"), [], `the real user's tries: ${tries.join(", ")}`);
    const checked = guesses.filter((s) => s === 401).length;
    assert.ok(checked <= 8, `${checked} of ${guesses.length} guesses reached the password check: the guesser's own X-Forwarded-For entries were believed`);
  });

  it("behind a proxy it does not trust, ignores X-Forwarded-For, and guesses for a name that does not exist lock no one out", async () => {
    const attack = guessEvery100ms(`${direct.url}/login`, "admin", 10_000, (i) => ({ headers: { "x-forwarded-for": `10.8.${i % 250}.${i % 7}` } }));
    const tries = await triesDuring(attack, 1000, () => login(`${direct.url}/login`, "bob", PASSWORD, { headers: { "x-forwarded-for": "198.51.100.3" } }));
    const guesses = await attack.statuses;
    assert.deepEqual(tries.filter((t) => t !== "in"), [], `the real user's tries: ${tries.join(", ")}`);
    const checked = guesses.filter((s) => s === 401).length;
    assert.ok(checked <= 8, `${checked} of ${guesses.length} guesses reached the password check: X-Forwarded-For was believed`);
  });

  it("answers guesses for a name that does not exist as for a listed one, and they make no listed user wait", async () => {
    const url = `${proxied.url}/login2`;
    const statuses = async (username: string, address: string) => {
      const seen: number[] = [];
      for (let i = 0; i < 5; i++) seen.push(await login(url, username, `guess-${i}`, { headers: { "x-forwarded-for": address } }));
      return seen;
    };
    assert.deepEqual(await statuses("nobody-here", "192.0.2.10"), await statuses("erin", "192.0.2.11"));
    for (let i = 0; i < 30; i++) await login(url, `nobody-${i}`, "guess", { headers: { "x-forwarded-for": "192.0.2.12" } });
    for (let i = 0; i < 10; i++) await login(url, "nobody-here", "guess", { headers: { "x-forwarded-for": "192.0.2.12" } });
    for (const user of ["carol", "erin"]) assert.equal(await login(url, user, PASSWORD, { headers: { "x-forwarded-for": "192.0.2.12" } }), 200, `${user} after the guesses at that address`);
  });
});
