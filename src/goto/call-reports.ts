import type { HttpClient } from "../core/http/client";
import { formatDuration } from "../core/time";
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

/**
 * Items per request. A page's answer is parsed from one string, and a string of more than 128 KB
 * lives in V8's large-object space until a full collection: with 1,000 calls a page (about 1 MB of
 * JSON) a large day's garbage piles up there and the process grows with the day. 250 keeps each
 * answer small; only users with many calls need more requests for it.
 */
export const DEFAULT_PAGE_SIZE = 250;
/** Rows per message: small enough that a batch dies young in memory, large enough to be cheap. */
export const DEFAULT_BATCH_SIZE = 500;

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
  yield* pages<UserActivityCall>(client, userPath(userId), window, options);
}

async function* pages<T>(
  client: HttpClient,
  path: string,
  window: CallWindow,
  options: CallReportsOptions & { expected?: number; firstPage?: number; seen?: number },
): AsyncGenerator<T[]> {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  let seen = options.seen ?? 0;
  for (let page = options.firstPage ?? 0; ; page++) {
    const items = await fetchPage<T>(client, path, window, page, options);
    seen += items.length;
    if (items.length > 0) yield items;
    // A short page ends the list, unless the summary promised more: then the server capped the
    // page size below ours, and the next page still has calls.
    if (items.length === 0) return;
    if (items.length < pageSize && (options.expected === undefined || seen >= options.expected)) return;
  }
}

/** Requests of one export in flight at once: enough to hide GoTo's latency within its rate limit. */
const IN_FLIGHT = 2;

/**
 * Every call of the window as call-log rows, user after user in the API's order, one array per
 * page read. The summary's volume says how many pages each user has, so the next pages are asked
 * for while this one is written (at most IN_FLIGHT at once, delivered in order): memory stays at a
 * few pages whatever the size of the day. A user with more calls than the summary said is read
 * on, page by page, until a short page.
 */
export async function* callReportRows(client: HttpClient, window: CallWindow, options: CallReportsOptions = {}): AsyncGenerator<CallLogRow[]> {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  for await (const users of usersWithActivity(client, window, options)) {
    const planned = users
      .filter((user) => user?.userId)
      .flatMap((user) => {
        const expected = user.dataValues?.volume;
        const count = Math.max(1, Math.ceil((typeof expected === "number" ? expected : 0) / pageSize));
        return Array.from({ length: count }, (_, page) => ({ user, page, last: page === count - 1, expected }));
      });
    const tasks = planned.map((p) => () => fetchPage<UserActivityCall>(client, userPath(p.user.userId), window, p.page, options).then((items) => ({ ...p, items })));
    const seen = new Map<string, number>();
    for await (const got of inOrder(tasks, IN_FLIGHT)) {
      const total = (seen.get(got.user.userId) ?? 0) + got.items.length;
      seen.set(got.user.userId, total);
      if (got.items.length) yield got.items.map((call) => callReportRow(call, got.user));
      const more = got.last && got.items.length > 0 && (got.items.length >= pageSize || (got.expected !== undefined && total < got.expected));
      if (!more) continue;
      const rest = pages<UserActivityCall>(client, userPath(got.user.userId), window, { ...options, expected: got.expected, firstPage: got.page + 1, seen: total });
      for await (const calls of rest) yield calls.map((call) => callReportRow(call, got.user));
    }
  }
}

function userPath(userId: string): string {
  return `reports/user-activity/${encodeURIComponent(userId)}`;
}

async function fetchPage<T>(client: HttpClient, path: string, window: CallWindow, page: number, options: CallReportsOptions): Promise<T[]> {
  const body = await client.json<CallReportsPage<T>>({
    path,
    query: { startTime: isoSeconds(window.start), endTime: isoSeconds(window.end), page, pageSize: options.pageSize ?? DEFAULT_PAGE_SIZE, accountKey: options.accountKey },
    signal: options.signal,
  });
  return Array.isArray(body?.items) ? body.items : [];
}

/** Runs tasks with at most `concurrency` at once and yields their results in the tasks' order. */
export async function* inOrder<T>(tasks: Iterable<() => Promise<T>>, concurrency: number): AsyncGenerator<T> {
  const pending = tasks[Symbol.iterator]();
  const running: Array<Promise<T>> = [];
  const fill = () => {
    while (running.length < concurrency) {
      const next = pending.next();
      if (next.done) return;
      const started = next.value();
      started.catch(() => undefined); // awaited below in its turn; never an unhandled rejection
      running.push(started);
    }
  };
  fill();
  while (running.length > 0) {
    const result = await running.shift()!;
    fill();
    yield result;
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
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
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
