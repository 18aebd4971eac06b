import type { HttpClient } from "../core/http/client";
import type { CalendarDay } from "./days";
import { CallEventsPage, CallEventsSummary, CallLogRow, CallReportsPage, UserActivityCall, UserActivitySummary } from "./types";

/** The instants to report on: start inclusive, end exclusive. */
export interface CallWindow {
  start: Date;
  end: Date;
}

export interface CallReportsOptions {
  /** Items per request; the API takes 1 to 10,000 (third-party note, unverified) and defaults to 100. */
  pageSize?: number;
  /** Sent when configured: needed when the token's user belongs to several organizations. */
  accountKey?: string;
  signal?: AbortSignal;
}

export const DEFAULT_PAGE_SIZE = 1000;

/** Which API a day's calls come from. */
export type CallSource = "call-reports" | "call-events";

/**
 * The users with calls in the window, page by page (`GET /reports/user-activity`). Paging is
 * `page` from 0 and `pageSize`; the answer has items only and no total. A server may cap the page
 * below what was asked, so a short page proves nothing here: the list ends at an empty page (one
 * request more per day).
 */
export async function* usersWithActivity(client: HttpClient, window: CallWindow, options: CallReportsOptions = {}): AsyncGenerator<UserActivitySummary[]> {
  yield* pages<UserActivitySummary>(client, "reports/user-activity", window, { ...options, expected: Number.POSITIVE_INFINITY });
}

/**
 * One user's calls in the window, page by page (`GET /reports/user-activity/{userId}`). The
 * summary's `volume` says how many to expect, so a short page ends the list only once they came.
 */
export async function* callsOfUser(
  client: HttpClient,
  userId: string,
  window: CallWindow,
  options: CallReportsOptions & { expected?: number } = {},
): AsyncGenerator<UserActivityCall[]> {
  yield* pages<UserActivityCall>(client, `reports/user-activity/${encodeURIComponent(userId)}`, window, options);
}

async function* pages<T>(client: HttpClient, path: string, window: CallWindow, options: CallReportsOptions & { expected?: number }): AsyncGenerator<T[]> {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  let seen = 0;
  for (let page = 0; ; page++) {
    const body = await client.json<CallReportsPage<T>>({
      path,
      query: { startTime: isoSeconds(window.start), endTime: isoSeconds(window.end), page, pageSize, accountKey: options.accountKey },
      signal: options.signal,
    });
    const items = Array.isArray(body?.items) ? body.items : [];
    seen += items.length;
    if (items.length > 0) yield items;
    // A short page ends the list, unless the summary promised more: then the server capped the
    // page size below ours, and the next page still has calls.
    if (items.length === 0) return;
    if (items.length < pageSize && (options.expected === undefined || seen >= options.expected)) return;
  }
}

/**
 * Every call of the window as call-log rows, user after user in the API's order, one array per
 * page read: memory stays at one page whatever the size of the day.
 */
export async function* callReportRows(client: HttpClient, window: CallWindow, options: CallReportsOptions = {}): AsyncGenerator<CallLogRow[]> {
  for await (const users of usersWithActivity(client, window, options)) {
    for (const user of users) {
      if (!user?.userId) continue;
      const expected = user.dataValues?.volume;
      for await (const calls of callsOfUser(client, user.userId, window, { ...options, expected })) {
        yield calls.map((call) => callReportRow(call, user));
      }
    }
  }
}

/**
 * Every call of the window from the account-wide Call Events Report (`GET /report-summaries`,
 * cursor paging with `pageMarker`; third-party evidence only, see goto-apis.md §2.5). It has no
 * user or queue per call; the first participant stands as the callee.
 */
export async function* callEventRows(client: HttpClient, window: CallWindow, accountKey: string, options: CallReportsOptions = {}): AsyncGenerator<CallLogRow[]> {
  let marker: string | undefined;
  const seenMarkers = new Set<string>();
  for (;;) {
    const body = await client.json<CallEventsPage>({
      path: "report-summaries",
      query: { accountKey, startTime: isoSeconds(window.start), endTime: isoSeconds(window.end), pageSize: options.pageSize ?? DEFAULT_PAGE_SIZE, pageMarker: marker },
      signal: options.signal,
    });
    const items = Array.isArray(body?.items) ? body.items : [];
    if (items.length > 0) yield items.map(callEventRow);
    marker = body?.nextPageMarker || undefined;
    if (!marker) return;
    // A server that hands out the same marker twice would keep us here forever.
    if (seenMarkers.has(marker)) throw new Error("GoTo's Call Events Report returned a page marker it had already given");
    seenMarkers.add(marker);
  }
}

/** The original export's row: the user's name, the queue's name, the parties flattened. */
export function callReportRow(call: UserActivityCall, user: UserActivitySummary): CallLogRow {
  return {
    user: text(user.userName),
    queue: text(call.queue?.name),
    direction: text(call.direction),
    disposition: text(call.disposition),
    startTime: text(call.startTime),
    endTime: text(call.endTime),
    answerTime: text(call.answerTime),
    duration: formatDuration(call.duration),
    callerName: text(call.caller?.name),
    callerNumber: text(call.caller?.number),
    calleeName: text(call.callee?.name),
    calleeNumber: text(call.callee?.number),
  };
}

export function callEventRow(summary: CallEventsSummary): CallLogRow {
  const callee = summary.participants?.[0];
  const started = Date.parse(summary.callCreated ?? "");
  const ended = Date.parse(summary.callEnded ?? "");
  return {
    user: text(callee?.name),
    queue: "",
    direction: text(summary.direction),
    disposition: text(summary.callerOutcome),
    startTime: text(summary.callCreated),
    endTime: text(summary.callEnded),
    answerTime: text(summary.callAnswered),
    duration: Number.isFinite(started) && Number.isFinite(ended) ? formatDuration(ended - started) : "",
    callerName: text(summary.caller?.name),
    callerNumber: text(summary.caller?.number),
    calleeName: text(callee?.name),
    calleeNumber: text(callee?.number ?? callee?.type?.extensionNumber),
  };
}

/** Milliseconds as H:MM:SS, as Python's `str(timedelta)` wrote it in the original (`0:01:23`). */
export function formatDuration(ms: number | null | undefined): string {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) return "";
  const total = Math.floor(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  return `${h}:${String(m).padStart(2, "0")}:${String(s).padStart(2, "0")}`;
}

/** `2026-11-22T23:00:00Z`: UTC, explicit, without milliseconds. */
export function isoSeconds(at: Date): string {
  return at.toISOString().replace(/\.\d{3}Z$/, "Z");
}

export interface CallLogBatch {
  rows: CallLogRow[];
  /** The batch's place in the day, from 0. */
  index: number;
  /** True for the day's last batch (there is always one, empty for a day without calls). */
  last: boolean;
  /** Rows of the day so far, this batch included. */
  total: number;
}

/**
 * A day's rows in batches of `batchSize`, for a message each. One batch is held back so that the
 * last one sent knows it is the last; a day without calls gives one empty batch.
 */
export async function* callLogsForDay(
  client: HttpClient,
  day: CalendarDay,
  options: CallReportsOptions & { batchSize?: number; source?: CallSource; accountKey?: string } = {},
): AsyncGenerator<CallLogBatch> {
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_PAGE_SIZE);
  const window = { start: day.start, end: day.end };
  const source =
    options.source === "call-events"
      ? callEventRows(client, window, options.accountKey ?? "", options)
      : callReportRows(client, window, options);
  let pending: CallLogRow[] = [];
  let held: CallLogRow[] | undefined;
  let index = 0;
  let total = 0;
  for await (const rows of source) {
    for (const row of rows) {
      pending.push(row);
      if (pending.length >= batchSize) {
        if (held) {
          total += held.length;
          yield { rows: held, index: index++, last: false, total };
        }
        held = pending;
        pending = [];
      }
    }
  }
  if (held && pending.length === 0) {
    total += held.length;
    yield { rows: held, index, last: true, total };
    return;
  }
  if (held) {
    total += held.length;
    yield { rows: held, index: index++, last: false, total };
  }
  total += pending.length;
  yield { rows: pending, index, last: true, total };
}

function text(value: unknown): string {
  return value === null || value === undefined ? "" : String(value);
}
