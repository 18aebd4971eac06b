import { AuthorizationRequiredError, PipelineError, asPipelineError } from "../errors";
import { testFromFlow } from "./connection-test";
import type { Lifecycle } from "./lifecycle";
import { StatusReporter } from "./status";
import type { DoneFunction, Node, NodeMessage, SendFunction } from "./types";

export type InputHandler = (msg: NodeMessage, send: SendFunction) => Promise<void>;

/**
 * Routes a node's `input` to one async handler and makes its end certain: the handler keeps its
 * three declared parameters (so the runtime tracks completion), no promise escapes (the runtime
 * catches only synchronous throws; a stray rejection ends Node-RED), and every failure becomes a
 * status a person understands plus exactly one `done(err)`, which Catch nodes see.
 */
export function handleInput(node: Node, status: StatusReporter, handler: InputHandler, options: { connectionTest?: boolean; life?: Lifecycle } = {}): void {
  const testable = options.connectionTest !== false;
  node.on("input", (msg: NodeMessage, send: SendFunction, done: DoneFunction) => {
    // `test`: the connection test of the config nodes this node uses, its report to the output.
    // Never for a dashboard client's message (`_client`): a browser may not probe the services.
    if (testable && msg.topic === "test" && !("_client" in msg) && testFromFlow(node, status, msg, send, done)) return;
    let finished = false;
    const finish = (err?: PipelineError) => {
      if (finished) return;
      finished = true;
      if (err) {
        if (err instanceof AuthorizationRequiredError) status.needsAuthorization();
        else if (err.partial) status.warn(err.status);
        else status.error(err.status);
      }
      try {
        if (err) done(err);
        else done();
      } catch (thrown) {
        // The runtime copies the message for Catch and Complete nodes; a message too deep to copy
        // (thousands of levels, from a stranger) throws there. Report it without the message.
        try {
          node.error(err ?? asPipelineError(thrown));
        } catch {
          // nothing more can be reported
        }
      }
    };
    let running: Promise<void>;
    try {
      running = handler(msg, send);
      // A close waits for the message under way, so its outcome is stored before the database goes.
      options.life?.work(running);
    } catch (err) {
      finish(asPipelineError(err));
      return;
    }
    running.then(
      () => finish(),
      (err: unknown) => finish(asPipelineError(err)),
    );
  });
}
