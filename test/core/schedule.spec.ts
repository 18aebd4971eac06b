import assert from "node:assert/strict";
import { FlowNodeConfig, nextCronTime, scheduleOf } from "../../src/core/schedule";

/** A local time, as the inject node reads its crontab. */
function local(y: number, m: number, d: number, h = 0, min = 0): Date {
  return new Date(y, m - 1, d, h, min);
}

describe("the schedule of a pipeline node", () => {
  it("finds the next time a crontab matches, in local time", () => {
    assert.deepEqual(nextCronTime("30 00 * * *", local(2026, 12, 7, 20, 5)), local(2026, 12, 8, 0, 30));
    assert.deepEqual(nextCronTime("30 00 * * *", local(2026, 12, 7, 0, 10)), local(2026, 12, 7, 0, 30));
    assert.deepEqual(nextCronTime("*/15 * * * *", local(2026, 12, 7, 20, 5)), local(2026, 12, 7, 20, 15));
    assert.deepEqual(nextCronTime("0 8 * * 1-5", local(2026, 12, 5, 9)), local(2026, 12, 7, 8), "Saturday: next is Monday");
    assert.deepEqual(nextCronTime("0 2 1 jan *", local(2026, 12, 7)), local(2027, 1, 1, 2));
    assert.deepEqual(nextCronTime("0 30 0 1 8 *", local(2026, 12, 7)), local(2027, 8, 1, 0, 30), "six fields: seconds first");
    assert.equal(nextCronTime("not a crontab", local(2026, 12, 7)), null);
    assert.equal(nextCronTime("0 0 31 2 *", local(2026, 12, 7)), null, "a day that never comes");
  });

  const flows: FlowNodeConfig[] = [
    { id: "nightly", type: "inject", crontab: "30 00 * * *", repeat: "", wires: [["calls"]] },
    { id: "backfill", type: "inject", crontab: "", repeat: "", wires: [["calls"]] },
    { id: "calls", type: "goto-call-logs", wires: [["writer"]] },
    { id: "every-15", type: "inject", crontab: "", repeat: "900", wires: [["shape"]] },
    { id: "shape", type: "change", wires: [["sync"]] },
    { id: "sync", type: "teamleader-query", wires: [[]] },
    { id: "http", type: "http in", wires: [["provision"]] },
    { id: "provision", type: "goto-provision-user", wires: [[]] },
    { id: "monitor", type: "graph-ooo-status", interval: "120", wires: [[]] },
  ];

  it("reads a cron time from the inject node that starts it", () => {
    const s = scheduleOf("calls", flows, null, local(2026, 12, 7, 20));
    assert.deepEqual(s, { kind: "cron", text: "30 00 * * *", nextRunAt: local(2026, 12, 8, 0, 30) });
  });

  it("reads a repeat interval through a node between, the next start after the last", () => {
    const now = local(2026, 12, 7, 20);
    assert.deepEqual(scheduleOf("sync", flows, new Date(now.getTime() - 60_000), now), { kind: "interval", text: "every 900 s", nextRunAt: new Date(now.getTime() + 840_000) });
  });

  it("reads the out-of-office monitor's own polling interval", () => {
    const now = local(2026, 12, 7, 20);
    assert.equal(scheduleOf("monitor", flows, now, now)?.text, "every 120 s");
  });

  it("calls a node only a request starts on demand, and knows nothing of a node not deployed", () => {
    assert.deepEqual(scheduleOf("provision", flows, null), { kind: "on demand", text: null, nextRunAt: null });
    assert.equal(scheduleOf("gone", flows, null), null);
  });
});
