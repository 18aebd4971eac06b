import assert from "node:assert/strict";
import { ActionBudget } from "../../src/connections/action-budget";
import { packetAllowed } from "../../src/connections/dashboard-packets";
import { ManualClock } from "../../src/core/clock";

const registry = { isWidget: (id: string) => id === "board-ui", isLayout: (id: string) => id === "board-page" };

describe("dashboard packets", () => {
  it("lets a widget event through only with a registered widget's id first", () => {
    for (const event of ["widget-send", "widget-action", "widget-change", "widget-load"]) {
      assert.equal(packetAllowed([event, "board-ui", { payload: 1 }], registry), true, event);
      for (const id of [123, null, [], {}, "", "board-node", "__proto__", "x".repeat(201)]) assert.equal(packetAllowed([event, id, { payload: 1 }], registry), false, `${event} ${String(id)}`);
    }
  });

  it("lets widget-load also name Dashboard's own ui- widgets, a page or a group", () => {
    assert.equal(packetAllowed(["widget-load", "ui-notification"], registry), true);
    assert.equal(packetAllowed(["widget-load", "board-page"], registry), true);
    assert.equal(packetAllowed(["widget-send", "ui-notification", {}], registry), false);
  });

  it("refuses reserved names, many arguments, deep nesting and huge collections", () => {
    for (const name of ["disconnect", "error", "connect", "newListener"]) assert.equal(packetAllowed([name, "x"], registry), false, name);
    assert.equal(packetAllowed(["widget-send", "board-ui", 1, 2, 3, 4, 5], registry), false);
    assert.equal(packetAllowed(["widget-send", "board-ui", JSON.parse("[".repeat(100) + "]".repeat(100))], registry), false);
    assert.equal(packetAllowed(["widget-send", "board-ui", Array.from({ length: 60_000 }, () => 0)], registry), false);
    assert.equal(packetAllowed([5, "board-ui"], registry), false);
    assert.equal(packetAllowed("widget-send", registry), false);
  });

  it("leaves other events, such as a third-party widget's own, to their handlers", () => {
    assert.equal(packetAllowed(["my-widget-event", 1, 2], registry), true);
  });
});

describe("action budget", () => {
  it("allows a burst, refuses the rest with one flood-started, and reports a new flood after a quiet spell", async () => {
    const clock = new ManualClock(0);
    const budget = new ActionBudget({ burst: 3, perSecond: 1, clock });
    const verdicts = Array.from({ length: 6 }, () => budget.take("a"));
    assert.deepEqual(verdicts, ["allowed", "allowed", "allowed", "flood-started", "refused", "refused"]);
    assert.equal(budget.take("b"), "allowed", "another client is not held back");
    await clock.advance(1000);
    assert.equal(budget.take("a"), "allowed", "one action a second comes back");
    assert.equal(budget.take("a"), "refused", "the same flood is not reported again");
    await clock.advance(10_000);
    assert.deepEqual([budget.take("a"), budget.take("a"), budget.take("a"), budget.take("a")], ["allowed", "allowed", "allowed", "flood-started"]);
  });
});
