import assert from "node:assert/strict";
import { request } from "undici";
import { FaultRig, PROXY_FAULTS, describeFault } from "./harness";

/** The GoTo provisioning pipeline (a batch, and POST /provision) with GoTo failing mid-run. */
describe("faults: GoTo user provisioning", function () {
  this.timeout(180_000);
  let rig: FaultRig;
  let license: string;
  let batchNumber = 0;

  before(async () => {
    rig = await FaultRig.start({ pipelines: ["provisioning"] });
    license = rig.sandbox.goto.admin.addLicense("Fault tests", 10_000).key;
  });
  // A test that failed mid-fault leaves no fault behind for the next.
  afterEach(async function () {
    await rig?.finish(this.currentTest);
    await rig?.healAll();
  });
  after(async () => rig?.stop());

  function batch(size: number) {
    const n = batchNumber++;
    return Array.from({ length: size }, (_, i) => ({ action: "provision", email: `fault.${n}.${i}@example.com`, firstName: `Fault ${n}`, lastName: `User ${i}`, licenseKeys: [license] }));
  }

  /** Each user of the batch in GoTo exactly once, with its licence, and one welcome mail each. */
  function outcome(items: Array<{ email: string }>) {
    const admin = rig.sandbox.goto.admin;
    let missing = 0;
    let duplicated = 0;
    for (const { email } of items) {
      const users = admin.usersWithEmail(email);
      if (users.length === 0 || !users.every((u) => admin.licensesOf(u.key).includes(license))) missing++;
      duplicated += Math.max(0, users.length - 1) + Math.max(0, admin.welcomeMails.filter((m) => m.toLowerCase() === email.toLowerCase()).length - 1);
    }
    return { missing, duplicated };
  }

  for (const mode of PROXY_FAULTS) {
    it(`provisions a batch, each user once, when GoTo ${describeFault(mode)} mid-batch`, async () => {
      rig.measure("provisioning", "goto", mode);
      const items = batch(15);
      await rig.forget();
      await rig.inject("gw-provisioning-sample", items);
      await rig.until(() => rig.sandbox.goto.admin.usersWithEmail(items[0]!.email).length > 0 || undefined, 30_000, "the batch to create its first user");
      const healed = await rig.faultWindow("goto", mode);
      const ended = await rig.until((o) => (o.completed.some((c) => c.node === "gw-provisioning-report") ? "reported" : o.errors.length ? "failed" : undefined), 60_000, "the batch's report");
      if (ended === "failed" || outcome(items).missing > 0) {
        // The items that failed are in the Catch message; the operator sends the batch again.
        await rig.forget();
        await rig.inject("gw-provisioning-sample", items);
        await rig.until((o) => o.completed.some((c) => c.node === "gw-provisioning-report") || (o.errors.length > 0 && o.errors), 30_000, "the batch sent again to report");
      }
      rig.note(healed, outcome(items));
      assert.ok(Date.now() - healed < 30_000, `recovered ${(Date.now() - healed) / 1000} s after the fault ended`);
      // The run that had failures reported them to Catch; the status is the last run's.
      const observed = await rig.observed();
      assert.equal(observed.statuses["gw-provisioning-batch"]?.fill, "green");
      assert.deepEqual(outcome(items), { missing: 0, duplicated: 0 });
    });
  }

  for (const mode of PROXY_FAULTS) {
    it(`answers POST /provision when GoTo ${describeFault(mode)}, and provisions the user once when it is back`, async () => {
      const token = await rig.tokenFor();
      const [item] = batch(1);
      const provision = async () => {
        const res = await request(`${rig.red.url}/provision`, {
          method: "POST",
          headers: { "content-type": "application/json", "x-access-tokens": token },
          body: JSON.stringify(item),
          headersTimeout: 120_000,
        });
        return { status: res.statusCode, body: (await res.body.json()) as { result: string } };
      };
      let during!: ReturnType<typeof provision>;
      const healed = await rig.faultWindow("goto", mode, { during: () => (during = provision()) });
      const first = await during;
      // Answered: done, or a failure that says so (a 5xx the caller retries).
      assert.ok(first.status === 200 || first.status >= 500, `answered ${first.status}: ${JSON.stringify(first.body)}`);
      const again = await provision();
      assert.equal(again.status, 200);
      assert.ok(["created", "unchanged"].includes(again.body.result), JSON.stringify(again.body));
      assert.ok(Date.now() - healed < 30_000);
      assert.deepEqual(outcome([item!]), { missing: 0, duplicated: 0 });
    });
  }
});
