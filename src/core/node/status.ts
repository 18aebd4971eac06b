import { ConfigError } from "../errors";
import type { Node, NodeStatus } from "./types";

/**
 * A node's status through named states, so every node says the same thing the same way.
 * Texts stay short (the editor shows about 20 characters under a node).
 */
export class StatusReporter {
  private last = "";

  constructor(private readonly node: Pick<Node, "status">) {}

  /** Work under way: "requesting", "syncing 40%", "2026-11-22 · 1,200 calls". */
  busy(text: string): void {
    this.set({ fill: "blue", shape: "dot", text });
  }

  /** Finished well, with what the user wants to know. */
  ok(text: string): void {
    this.set({ fill: "green", shape: "dot", text });
  }

  /** Connected, idle, waiting for input. */
  ready(text: string): void {
    this.set({ fill: "green", shape: "ring", text });
  }

  /** Something to look at, but not broken: queued mail, a throttled poll. */
  warn(text: string): void {
    this.set({ fill: "yellow", shape: "ring", text });
  }

  needsAuthorization(): void {
    this.set({ fill: "red", shape: "ring", text: "needs authorization" });
  }

  error(text: string): void {
    this.set({ fill: "red", shape: "ring", text: shorten(text) });
  }

  clear(): void {
    this.set({});
  }

  private set(status: NodeStatus): void {
    const key = JSON.stringify(status);
    if (key === this.last) return;
    this.last = key;
    this.node.status(status);
  }
}

/**
 * Shows at deploy what a node's setup lacks ("missing key secret"), so that a freshly imported node
 * says what to fill in before a message fails on it. Only setup mistakes (ConfigError) are shown;
 * the same check runs again, and reaches Catch, when a message arrives.
 */
export function showSetupProblem(status: Pick<StatusReporter, "error">, check: () => unknown): void {
  const show = (err: unknown) => {
    if (err instanceof ConfigError) status.error(err.status);
  };
  try {
    const result = check();
    if (result instanceof Promise) result.catch(show);
  } catch (err) {
    show(err);
  }
}

/**
 * A setup gap ("missing client id"): a node not configured yet, which timers and deploy-time work
 * show in the status alone, so a freshly imported example fills no debug pane with errors.
 */
export function isSetupGap(err: unknown): boolean {
  return err instanceof ConfigError && err.status.startsWith("missing ");
}

function shorten(text: string): string {
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}

// One formatter for every count: toLocaleString builds a new one on each call, at a cost of milliseconds.
const COUNT = new Intl.NumberFormat("en-US");

/** 1200 → "1,200": counts as a person reads them in a status. */
export function formatCount(n: number): string {
  return COUNT.format(n);
}
