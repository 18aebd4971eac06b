import { formatCount } from "../core/node/status";
import { PollResult, ThrottledCycle, isSettingsError } from "./monitor";
import type { CycleHolder } from "./watch-list";

/** What a monitor's node shows: one of the status helper's named states, and its text. */
export interface MonitorStatus {
  state: "ready" | "warn" | "error";
  text: string;
}

export interface MonitorView {
  watched: number;
  out: number;
  /** The last cycle this instance ran. */
  cycle?: PollResult;
  /** Outlook refusing the app's reads now (told during a cycle, or left at its end). */
  throttling?: ThrottledCycle;
  /** Another instance runs the cycles: who, and when it last finished. */
  aside?: CycleHolder;
  /** When the last cycle ended ("14:05"), or "". */
  lastPoll: string;
}

/**
 * Green only when the last cycle read everyone; yellow while Outlook throttles the app, or when a
 * cycle missed some users; red when it read none, or when the app's settings are wrong.
 */
export function monitorStatus(view: MonitorView): MonitorStatus {
  const { cycle, lastPoll } = view;
  // Another replica on the database polls: this one says who, and when it last finished.
  if (view.aside) return { state: "ready", text: `done by ${view.aside.by}${view.aside.finishedAt ? ` · ${clockTime(view.aside.finishedAt)}` : ""}` };
  if (cycle?.failure && isSettingsError(cycle.failure)) return { state: "error", text: cycle.failure.status };
  // Throttling is Outlook's to end: the monitor slowed down and waits, which is not broken.
  if (view.throttling) return { state: "warn", text: throttlingStatus(view.throttling) };
  if (cycle?.failure && cycle.read === 0 && cycle.watched > 0) return { state: "error", text: cycle.failure.status };
  if (cycle && cycle.read === 0 && cycle.watched > 0) return { state: "error", text: `none of ${formatCount(cycle.watched)} read · ${lastPoll}` };
  if (cycle && cycle.notRead.length > 0) return { state: "warn", text: `${formatCount(cycle.read)} of ${formatCount(cycle.watched)} read · ${lastPoll}` };
  return { state: "ready", text: `${formatCount(view.watched)} watched · ${view.out} out${lastPoll ? ` · ${lastPoll}` : ""}` };
}

/** "throttled by Microsoft Graph: 1,000 users waiting, slowed to 1 batch every 0.2 s" */
export function throttlingStatus(throttling: ThrottledCycle): string {
  const seconds = throttling.paceMs >= 10_000 ? Math.round(throttling.paceMs / 1000) : Math.max(0.1, Math.round(throttling.paceMs / 100) / 10);
  const users = `${formatCount(throttling.waiting)} ${throttling.waiting === 1 ? "user" : "users"}`;
  return `throttled by Microsoft Graph: ${users} waiting, slowed to 1 batch every ${seconds} s`;
}

/** A moment as the status shows it: "14:05", in the server's time zone. */
export function clockTime(at: Date): string {
  return at.toTimeString().slice(0, 5);
}
