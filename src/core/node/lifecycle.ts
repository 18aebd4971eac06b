import type { EventEmitter } from "node:events";
import { errorMessage } from "../errors";
import type { Node } from "./types";

type Closer = () => void | Promise<void>;

const CLOSE_BUDGET_MS = 14_000; // Node-RED gives a node 15 s to close

/**
 * Everything a node starts that must stop with it: timers, listeners, connections. Timer and
 * listener callbacks run guarded, so a throw becomes a logged error instead of a crash. On close,
 * every closer runs (newest first) within Node-RED's close budget, then `done()` is called.
 */
export class Lifecycle {
  private readonly closers = new Set<Closer>();
  private closed = false;
  private controller?: AbortController;

  constructor(private readonly node: Pick<Node, "on" | "error" | "warn"> & { type?: string }) {
    node.on("close", (_removed: boolean, done: () => void) => {
      void this.close().then(done, done);
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Aborted when the node closes, so long work (a backfill, a sync) stops at its next request. */
  get signal(): AbortSignal {
    if (!this.controller) {
      const controller = (this.controller = new AbortController());
      this.onClose(() => controller.abort(new Error(`the ${this.node.type ?? "node"} node was closed (a redeploy or a shutdown)`)));
    }
    return this.controller.signal;
  }

  /** Runs `closer` when the node closes. */
  onClose(closer: Closer): () => void {
    if (this.closed) void Promise.resolve().then(closer).catch(() => undefined);
    else this.closers.add(closer);
    return () => this.closers.delete(closer);
  }

  interval(task: () => void | Promise<void>, ms: number): void {
    const timer = setInterval(() => this.guard(task), ms);
    this.onClose(() => clearInterval(timer));
  }

  /** Runs `task` once after `ms`; the returned function cancels it. Nothing is kept once it ran. */
  timeout(task: () => void | Promise<void>, ms: number): () => void {
    const timer = setTimeout(() => {
      forget();
      this.guard(task);
    }, ms);
    const forget = this.onClose(() => clearTimeout(timer));
    return () => {
      clearTimeout(timer);
      forget();
    };
  }

  listen<E extends EventEmitter>(emitter: E, event: string, listener: (...args: any[]) => void | Promise<void>): void {
    const guarded = (...args: unknown[]) => this.guard(() => listener(...args));
    emitter.on(event, guarded);
    this.onClose(() => {
      emitter.off(event, guarded);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const closers = [...this.closers].reverse();
    this.closers.clear();
    const all = (async () => {
      for (const closer of closers) {
        try {
          await closer();
        } catch (err) {
          this.node.warn(`while closing: ${errorMessage(err)}`);
        }
      }
    })();
    let timer: NodeJS.Timeout | undefined;
    const budget = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.node.warn("closing took too long; some resources may still be open");
        resolve();
      }, CLOSE_BUDGET_MS);
    });
    await Promise.race([all, budget]);
    clearTimeout(timer);
  }

  private guard(task: () => void | Promise<void>): void {
    if (this.closed) return;
    try {
      const result = task();
      if (result && typeof (result as Promise<void>).then === "function") {
        (result as Promise<void>).catch((err: unknown) => this.node.error(errorMessage(err)));
      }
    } catch (err) {
      this.node.error(errorMessage(err));
    }
  }
}
