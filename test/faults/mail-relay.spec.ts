import assert from "node:assert/strict";
import { request } from "undici";
import { FaultRig, Neighbour, PROXY_FAULTS, describeFault } from "./harness";

/**
 * The monitoring mail relay (POST /api/placeMessage → outbox in PostgreSQL → SMTP) with the SMTP
 * server or the database failing while messages come in and go out.
 */
/** The shipped relay's SMTP pool: the most mails with the server at one moment. */
const SMTP_POOL = 5;

describe("faults: monitoring mail relay", function () {
  this.timeout(180_000);
  let rig: FaultRig;
  let token: string;
  let round = 0;

  before(async () => {
    rig = await FaultRig.start({ pipelines: ["mail-relay"], database: "server" });
    token = await rig.tokenFor();
  });
  beforeEach(async () => void (await rig.revive()));
  // A test that failed mid-fault leaves no fault behind for the next.
  afterEach(async function () {
    await rig?.finish(this.currentTest);
    await rig?.healAll();
  });
  after(async () => rig?.stop());

  /** Posts `count` messages one after the other; the ids of those accepted (202), and how many were refused. */
  async function send(count: number, tag: string): Promise<{ accepted: string[]; refused: number }> {
    const accepted: string[] = [];
    let refused = 0;
    for (let i = 0; i < count; i++) {
      try {
        const res = await request(`${rig.red.url}/api/placeMessage`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify({ message: `${tag} message ${i}\nhost=db-${i} check=disk` }),
          headersTimeout: 60_000,
          bodyTimeout: 60_000,
        });
        const answer = (await res.body.json().catch(() => ({}))) as { id?: string };
        if (res.statusCode === 202 && answer.id) accepted.push(answer.id);
        else refused++; // the caller was told, and sends it again (Alertmanager does)
      } catch {
        refused++;
      }
    }
    return { accepted, refused };
  }


  /** Messages sent before, during and after a fault; every accepted one is delivered once, the relay back to "0 queued". */
  async function throughFault(neighbour: Neighbour, fault: string, inject: (during: () => void) => Promise<number>): Promise<void> {
    rig.measure("mail-relay", neighbour, fault);
    const tag = `round-${round++}`;
    const before = await send(5, `${tag} before`);
    let during: Promise<{ accepted: string[] }> = Promise.resolve({ accepted: [] });
    const healed = await inject(() => (during = send(5, `${tag} during`)));
    const after = await send(5, `${tag} after`);
    const ids = [...before.accepted, ...after.accepted, ...(await during).accepted];
    await rig.until(() => rig.deliveries(ids).lost === 0 || undefined, 30_000, "every accepted message to be delivered").catch((err: Error) => {
      rig.note(healed, rig.deliveries(ids));
      throw err;
    });
    await rig.until((o) => o.statuses["mail-relay-relay"]?.text === "0 queued" || undefined, 30_000, "the relay's status back to 0 queued");
    assert.ok(Date.now() - healed < 30_000, `recovered ${(Date.now() - healed) / 1000} s after the fault ended (${neighbour})`);
    assert.equal(before.refused + after.refused, 0, "refused outside the fault");
    const outcome = rig.deliveries(ids);
    rig.note(healed, outcome);
    assert.equal(outcome.lost, 0);
    // A mail whose answer from the server was lost may arrive twice, at most those with the
    // server then (one per pooled connection), as the README says; a database fault causes none.
    if (neighbour === "smtp") assert.ok(outcome.duplicated <= SMTP_POOL, `${outcome.duplicated} duplicated`);
    else assert.equal(outcome.duplicated, 0);
  }
  /** A proxy fault that lands while messages are posted and delivered. */
  function proxyFault(neighbour: Neighbour, mode: (typeof PROXY_FAULTS)[number]) {
    return (during: () => void) => rig.faultWindow(neighbour, mode, { during });
  }

  for (const mode of PROXY_FAULTS) {
    it(`delivers every accepted message once when the SMTP server ${describeFault(mode)}`, async () => {
      await throughFault("smtp", mode, proxyFault("smtp", mode));
    });
  }

  for (const mode of PROXY_FAULTS) {
    it(`keeps Node-RED up and delivers every accepted message once when PostgreSQL ${describeFault(mode)}`, async () => {
      await throughFault("postgres", mode, proxyFault("postgres", mode));
    });
  }

  it("keeps Node-RED up and delivers every accepted message once when every database session is terminated", async () => {
    await throughFault("postgres", "terminate", (during) => rig.terminateAll(during));
  });

  it("keeps Node-RED up and delivers every accepted message once across a database restart (refused, then every connection reset)", async () => {
    await throughFault("postgres", "restart", (during) => rig.restartDatabase(during));
  });
});
