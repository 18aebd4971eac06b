import assert from "node:assert/strict";
import { FaultRig, Neighbour, PROXY_FAULTS, callsInDayFile, describeFault } from "./harness";

/** The call logs pipeline (goto-call-logs → blob-csv-writer) with GoTo or Azurite failing mid-run. */
describe("faults: GoTo call logs → Azure Blob", function () {
  this.timeout(180_000);
  let rig: FaultRig;
  let dayNumber = 0;

  before(async () => {
    rig = await FaultRig.start({ pipelines: ["call-logs"] });
  });
  // A test that failed mid-fault leaves no fault behind for the next.
  afterEach(async function () {
    await rig?.finish(this.currentTest);
    await rig?.healAll();
  });
  after(async () => rig?.stop());

  /** A day of its own for each test, with `calls` calls in the sandbox. */
  function freshDay(calls: number): string {
    const date = new Date(Date.UTC(2026, 5, 1 + dayNumber++)).toISOString().slice(0, 10);
    rig.sandbox.goto.calls.setVolume(date, calls);
    return date;
  }

  const callsInFile = (date: string) => callsInDayFile(rig, date);

  /** Runs one day; after the fault the run ends by itself, or fails with a Catch message and the next run writes the day. */
  async function runThrough(neighbour: Neighbour, mode: (typeof PROXY_FAULTS)[number]): Promise<void> {
    rig.measure("call-logs", neighbour, mode);
    const date = freshDay(3000);
    await rig.forget();
    await rig.inject("gw-calllogs-nightly", { from: date, to: date });
    // Mid-run: the GoTo node is reading pages (or the writer is writing, for Azurite).
    await rig.until((o) => /page/.test(o.statuses["gw-calllogs-goto"]?.text ?? "") && o.statuses["gw-calllogs-goto"]?.text?.startsWith(date), 30_000, "the run to be reading pages");
    const healed = await rig.faultWindow(neighbour, mode);
    const outcome = await rig.until(
      (o) => (o.completed.some((c) => c.node === "gw-calllogs-written") ? "written" : o.errors.length > 0 ? "failed" : undefined),
      60_000,
      "the run to end, written or failed",
    );
    if (outcome === "failed") {
      // The failure reached a Catch node; the next run (the next night, or a person) writes the day whole.
      await rig.forget();
      await rig.inject("gw-calllogs-nightly", { from: date, to: date });
      await rig.until((o) => o.completed.some((c) => c.node === "gw-calllogs-written") || (o.errors.length > 0 && o.errors), 30_000, "the next run to write the day");
    }
    assert.ok(Date.now() - healed < 30_000, `recovered ${(Date.now() - healed) / 1000} s after the fault ended`);
    const observed = await rig.observed();
    assert.match(observed.statuses["gw-calllogs-writer"]?.text ?? "", /3,000 rows written/);
    assert.equal(observed.statuses["gw-calllogs-writer"]?.fill, "green");
    const file = await callsInFile(date);
    rig.note(healed, file);
    assert.deepEqual(file, { missing: 0, duplicated: 0, rows: 3000 });
  }

  for (const neighbour of ["goto", "azurite"] as const) {
    for (const mode of PROXY_FAULTS) {
      it(`writes the whole day once when ${neighbour === "goto" ? "GoTo" : "Azure Blob"} ${describeFault(mode)} mid-run`, async () => {
        await runThrough(neighbour, mode);
        await rig.assertAlive();
      });
    }
  }
});

