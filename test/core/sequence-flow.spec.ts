import assert from "node:assert/strict";
import { acknowledgePart, endSequence, onSequenceAbandoned, partSent } from "../../src/core/node/sequence-flow";

describe("back-pressure of a msg.parts sequence", () => {
  it("lets the producer run only `window` parts ahead of a consumer that acknowledges", async () => {
    acknowledgePart({ id: "s1", index: 0 });
    await partSent("s1", 2, 2); // parts 1 and 2 are waiting: within the window
    let released = false;
    const third = partSent("s1", 3, 2).then(() => (released = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(released, false, "three parts unacknowledged: the producer waits");
    acknowledgePart({ id: "s1", index: 1 });
    await third;
    assert.equal(released, true);
    endSequence("s1");
  });

  it("never holds a producer whose parts nobody acknowledges", async () => {
    await partSent("nobody", 500, 2);
  });

  it("stops waiting for a consumer that makes no progress, and forgets a finished sequence", async () => {
    acknowledgePart({ id: "s2", index: 0 });
    const started = Date.now();
    await partSent("s2", 10, 2, 30);
    assert.ok(Date.now() - started >= 25, "it waited for the stall time first");
    await partSent("s2", 20, 2, 30_000); // stalled: no second wait
    acknowledgePart({ id: "s3", index: 0 });
    acknowledgePart({ id: "s3", index: 1, count: 2 });
    await partSent("s3", 40, 2, 30_000); // the last part was acknowledged: nothing to wait for
  });

  it("releases a waiting producer when its sequence ends", async () => {
    acknowledgePart({ id: "s4", index: 0 });
    const waiting = partSent("s4", 5, 1, 30_000);
    endSequence("s4");
    await waiting;
  });

  it("tells its consumers at once when a producer abandons a sequence, and not when it finishes", () => {
    const heard: string[] = [];
    const stop = onSequenceAbandoned((id) => heard.push(id));
    const broken = onSequenceAbandoned(() => {
      throw new Error("a consumer's own trouble");
    });
    acknowledgePart({ id: "s5", index: 0 });
    endSequence("s5", true);
    endSequence("s6");
    endSequence("never-acknowledged", true);
    stop();
    broken();
    endSequence("s7", true);
    assert.deepEqual(heard, ["s5", "never-acknowledged"]);
  });
});
