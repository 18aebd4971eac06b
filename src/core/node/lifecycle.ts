import type { EventEmitter } from "node:events";
import { errorMessage } from "../errors";
import type { Node } from "./types";

type Closer = () => void | Promise<void>;

const CLOSE_BUDGET_MS = 14_000; // Node-RED gives a node 15 s to close

/** The closes each config node waits for: those of the nodes that use it. */
const users = new WeakMap<object, Set<Promise<void>>>();

/**
 * Resolves once every node that uses `configNode` (see `Lifecycle.uses`) has closed, or after
 * `budgetMs`. Node-RED closes all nodes of a deploy at once: a config node waits here before it
 * releases what its users may still be writing with (a pool, a token store).
 */
export async function usersClosed(configNode: object, budgetMs = CLOSE_BUDGET_MS): Promise<void> {
  const closing = [...(users.get(configNode) ?? [])];
  if (!closing.length) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([Promise.all(closing), new Promise<void>((resolve) => (timer = setTimeout(resolve, budgetMs)))]);
  clearTimeout(timer);
}

/**
 * Everything a node starts that must stop with it: timers, listeners, connections. Timer and
 * listener callbacks run guarded, so a throw becomes a logged error instead of a crash. On close,
 * every closer runs (newest first) within Node-RED's close budget, then `done()` is called.
 */
export class Lifecycle {
  private readonly closers = new Set<Closer>();
  /** Work under way (a message being handled) that a close waits for, after stopping it. */
  private readonly working = new Set<Promise<unknown>>();
  private closed = false;
  private controller?: AbortController;
  private readonly finished: Promise<void>;
  private markFinished!: () => void;

  constructor(private readonly node: Pick<Node, "on" | "error" | "warn"> & { type?: string }) {
    this.finished = new Promise<void>((resolve) => (this.markFinished = resolve));
    node.on("close", (_removed: boolean, done: () => void) => {
      void this.close().then(done, done);
    });
  }

  /**
   * Keeps `configNode` from closing before this node has: its in-flight work (a mail being sent,
   * a batch being written) finishes or is handed back through the config node first.
   */
  uses<T extends object>(configNode: T): T {
    if (this.closed) return configNode;
    let closing = users.get(configNode);
    if (!closing) users.set(configNode, (closing = new Set()));
    if (!closing.has(this.finished)) {
      closing.add(this.finished);
      const held = closing;
      void this.finished.then(() => held.delete(this.finished));
    }
    return configNode;
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

  /**
   * Work the node has under way: a close first runs the closers (which abort or stop it), then
   * waits for it to end, so it stores its outcome before the config nodes it uses close.
   */
  work<T>(task: Promise<T>): Promise<T> {
    const settled = task.then(
      () => undefined,
      () => undefined,
    );
    this.working.add(settled);
    void settled.then(() => this.working.delete(settled));
    return task;
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
    try {
      await this.closeInOrder();
    } finally {
      this.markFinished();
    }
  }

  private async closeInOrder(): Promise<void> {
    // A config node with a lifecycle (a connection that owns a token store) outlasts its users.
    await usersClosed(this.node);
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
      while (this.working.size) await Promise.all([...this.working]);
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
