import assert from "node:assert/strict";
import { promises as fs } from "node:fs";
import path from "node:path";
import { request } from "undici";
import { alive } from "../../src/core/db/embedded";
import { eventually } from "../support/node-red";
import { FaultRig } from "./harness";

/**
 * The embedded PostgreSQL server (the shipped flows' default) failing under the mail relay: its
 * postmaster killed, stopped and started again, its data folder deleted.
 */
describe("faults: the embedded PostgreSQL server", function () {
  this.timeout(180_000);
  let rig: FaultRig;
  let token: string;
  let round = 0;

  before(async () => {
    rig = await FaultRig.start({ pipelines: ["mail-relay"], database: "embedded" });
    token = await rig.tokenFor();
    await rig.until((o) => o.statuses["mail-relay-relay"]?.text === "0 queued" || undefined, 60_000, "the relay's outbox to open");
  });
  beforeEach(async () => void (await rig.revive()));
  afterEach(async function () {
    await rig?.finish(this.currentTest);
  });
  after(async () => rig?.stop());

  const dataDir = () => path.join(rig.stateDir, "node-red", "gluework", "postgres", "data");

  async function postmaster(): Promise<number> {
    return eventually(async () => {
      const pid = Number((await fs.readFile(path.join(dataDir(), "postmaster.pid"), "utf8")).split("\n")[0]);
      return pid > 0 && alive(pid) ? pid : undefined;
    }, 30_000, "the embedded server's postmaster");
  }

  async function send(count: number, tag: string): Promise<{ accepted: string[]; answers: number[] }> {
    const accepted: string[] = [];
    const answers: number[] = [];
    for (let i = 0; i < count; i++) {
      const res = await request(`${rig.red.url}/api/placeMessage`, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
        body: JSON.stringify({ message: `${tag} message ${i}` }),
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      const answer = (await res.body.json().catch(() => ({}))) as { id?: string };
      answers.push(res.statusCode);
      if (res.statusCode === 202 && answer.id) accepted.push(answer.id);
    }
    return { accepted, answers };
  }


  async function throughServerLoss(name: string, signal: NodeJS.Signals): Promise<void> {
    rig.measure("mail-relay", "embedded", name);
    const tag = `embedded-${round++}`;
    const before = await send(5, `${tag} before`);
    const pid = await postmaster();
    const during = send(5, `${tag} during`);
    process.kill(pid, signal);
    await eventually(() => !alive(pid), 30_000, "the postmaster to end");
    const ended = Date.now();
    await rig.assertAlive();
    // As a monitoring system does: a message refused (503) while the server is away is sent again.
    const after: string[] = [];
    await rig.until(async () => {
      after.push(...(await send(1, `${tag} after ${after.length}`)).accepted);
      return after.length >= 5 || undefined;
    }, 30_000, "the relay to take messages again");
    const ids = [...before.accepted, ...(await during).accepted, ...after];
    await rig.until(() => rig.deliveries(ids).lost === 0 || undefined, 30_000, "every accepted message to be delivered");
    await rig.until((o) => o.statuses["mail-relay-relay"]?.text === "0 queued" || undefined, 30_000, "the relay's status back to 0 queued");
    const outcome = rig.deliveries(ids);
    rig.note(ended, outcome);
    assert.ok(Date.now() - ended < 30_000, `recovered ${(Date.now() - ended) / 1000} s after the server went`);
    assert.deepEqual(outcome, { lost: 0, duplicated: 0 });
  }

  it("keeps Node-RED up and delivers every accepted message once when the embedded postmaster is killed", async () => {
    await throughServerLoss("postmaster killed", "SIGKILL");
  });

  it("keeps Node-RED up and delivers every accepted message once when the embedded server is stopped (and started again by the package)", async () => {
    await throughServerLoss("server stopped", "SIGINT");
  });

  it("keeps Node-RED up, answers every message and says so when the embedded data folder is deleted under load", async () => {
    rig.measure("mail-relay", "embedded", "data folder deleted");
    const during = send(10, "deleted during");
    // The server may still write files while they go: rm tries again over those.
    await fs.rm(dataDir(), { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
    const deleted = Date.now();
    // Load goes on for a while: the server finds its files gone at its next write or checkpoint.
    const answered = await during;
    while (Date.now() - deleted < 5000) {
      const more = await send(1, "deleted load");
      answered.accepted.push(...more.accepted);
      answered.answers.push(...more.answers);
      await rig.assertAlive();
    }
    await rig.assertAlive();
    // Every request was answered: stored (202) or refused because the outbox could not be written (503).
    assert.ok(answered.answers.every((s) => s === 202 || s === 503), answered.answers.join(", "));
    const after = await send(3, "deleted after");
    assert.ok(after.answers.every((s) => s === 202 || s === 503), after.answers.join(", "));
    await rig.assertAlive();
    rig.note(deleted, { lost: 0, duplicated: rig.deliveries([...answered.accepted, ...after.accepted]).duplicated });
  });
});
