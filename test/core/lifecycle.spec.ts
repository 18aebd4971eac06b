import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { Lifecycle } from "../../src/core/node/lifecycle";

function fakeNode() {
  const node = new EventEmitter() as EventEmitter & { warn(m: unknown): void; error(m: unknown): void; errors: unknown[] };
  node.errors = [];
  node.warn = () => undefined;
  node.error = (m) => node.errors.push(m);
  return node;
}

describe("node lifecycle", () => {
  it("keeps nothing of a timeout once it ran or was cancelled, so a node that reschedules for days does not grow", async () => {
    const life = new Lifecycle(fakeNode() as never);
    let ran = 0;
    for (let i = 0; i < 500; i++) life.timeout(() => void ran++, 0);
    for (let i = 0; i < 500; i++) life.timeout(() => void ran++, 60_000)();
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(ran, 500);
    assert.equal((life as unknown as { closers: Set<unknown> }).closers.size, 0);
  });

  it("cancels pending timers on close and runs closers newest first", async () => {
    const node = fakeNode();
    const life = new Lifecycle(node as never);
    const order: string[] = [];
    let fired = false;
    life.timeout(() => void (fired = true), 30);
    life.onClose(() => void order.push("first"));
    life.onClose(() => void order.push("second"));
    await new Promise<void>((resolve) => node.emit("close", false, resolve));
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(fired, false);
    assert.deepEqual(order, ["second", "first"]);
  });
});

describe("node lifecycle signal", () => {
  it("aborts the node's signal when it closes, saying which node", async () => {
    const node = Object.assign(fakeNode(), { type: "goto-call-logs" });
    const life = new Lifecycle(node as never);
    const signal = life.signal;
    assert.equal(signal.aborted, false);
    await new Promise<void>((resolve) => node.emit("close", false, resolve));
    assert.equal(signal.aborted, true);
    assert.match(String(signal.reason), /the goto-call-logs node was closed/);
  });
});
