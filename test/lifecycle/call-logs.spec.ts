import assert from "node:assert/strict";
import { BlobServiceClient } from "@azure/storage-blob";
import { FaultRig, callsInDayFile } from "../faults/harness";
import { eventually } from "../support/node-red";
import { DeploymentType } from "../support/node-red-process";

const DAYS = 4;
const CALLS = 3000;

/** The shipped call-log flow (goto-call-logs → blob-csv-writer into Azurite) redeployed mid-backfill. */
describe("lifecycle: a call-log backfill interrupted by a deploy, then run again, leaves each day's file whole and once", function () {
  this.timeout(300_000);
  let rig: FaultRig;
  let firstDay = 0;

  before(async () => {
    rig = await FaultRig.start({ pipelines: ["call-logs"] });
  });
  after(async () => rig?.stop());

  /** `DAYS` days of their own, each with `CALLS` calls in the sandbox. */
  function freshDays(): string[] {
    const dates = Array.from({ length: DAYS }, (_, i) => new Date(Date.UTC(2026, 2, 1 + firstDay + i)).toISOString().slice(0, 10));
    firstDay += DAYS;
    for (const date of dates) rig.sandbox.goto.calls.setVolume(date, CALLS);
    return dates;
  }

  function blobName(date: string): string {
    const [y, m] = date.split("-");
    return `${y}/${m}/${date}_call_logs.csv`;
  }

  /** Every blob in the container, by name (none before the first file). */
  async function blobNames(): Promise<string[]> {
    const container = BlobServiceClient.fromConnectionString(rig.azurite.connectionString).getContainerClient("call-logs");
    const names: string[] = [];
    if (!(await container.exists())) return names; // the writer creates it with the first file
    for await (const blob of container.listBlobsFlat()) names.push(blob.name);
    return names;
  }

  const callsInFile = (date: string) => callsInDayFile(rig, date);

  /** Runs the range and waits for a file written for each of its days. */
  async function backfill(dates: string[]): Promise<void> {
    await rig.forget();
    // After a deploy, the inject node answers once its flow has started again.
    await eventually(() => rig.inject("gw-calllogs-nightly", { from: dates[0], to: dates.at(-1) }).then(() => true, (err: Error) => (/404/.test(err.message) ? undefined : Promise.reject(err))), 30_000, "the inject node");
    await rig.until(
      (o) => {
        if (o.errors.length) throw new Error(`the backfill failed: ${JSON.stringify(o.errors)}`);
        return o.completed.filter((c) => c.node === "gw-calllogs-written").length >= dates.length || undefined;
      },
      120_000,
      "a file written for each day",
    );
  }

  for (const kind of ["full", "flows", "nodes"] as DeploymentType[]) {
    it(`a ${kind} deploy mid-backfill, then the backfill again (twice), leaves ${DAYS} files of ${CALLS} calls, each call once`, async () => {
      const dates = freshDays();
      const before = new Set(await blobNames());
      await rig.forget();
      await rig.inject("gw-calllogs-nightly", { from: dates[0], to: dates.at(-1) });
      // Mid-backfill: the first day written, the second being read.
      await rig.until((o) => (o.statuses["gw-calllogs-goto"]?.text ?? "").startsWith(`${dates[1]} · page`), 60_000, "the backfill to be reading the second day");
      // Anything but a full deploy restarts only what changed: the call-log node (and, for flows, its tab).
      await rig.redeploy(kind, (flows) => flows.map((n) => (n.id === "gw-calllogs-goto" && kind !== "full" ? { ...n, name: `call logs (${kind})` } : n)));
      await rig.assertAlive();
      const writtenBefore = (await rig.observed()).completed.filter((c) => c.node === "gw-calllogs-written").length;
      assert.ok(writtenBefore < DAYS, `the deploy landed mid-backfill (${writtenBefore} of ${DAYS} days written)`);

      await backfill(dates);
      const files = await Promise.all(dates.map(callsInFile));
      // Run again: the files are replaced, never extended.
      await backfill(dates);
      const again = await Promise.all(dates.map(callsInFile));

      const added = (await blobNames()).filter((name) => !before.has(name)).sort();
      if (process.env.COUNTS) console.log(`call logs ${kind}: ${writtenBefore} of ${DAYS} days written before the deploy, ${added.length} blobs, rows ${files.map((f) => f.rows).join("/")}, again ${again.map((f) => f.rows).join("/")}`);
      assert.deepEqual(added, dates.map(blobName).sort(), "one blob per day and nothing else");
      for (const outcome of [...files, ...again]) assert.deepEqual(outcome, { missing: 0, duplicated: 0, rows: CALLS });
    });
  }
});
