import type { HttpClient } from "../core/http/client";
import { PipelineError } from "../core/errors";
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
 * lives in V8's large-object space until a full collection: a large day's garbage piles up there
 * and the process grows with the day. A name with one accent makes the whole answer a two-byte
 * string, twice its UTF-8 size: 250 calls (70 KB of JSON) already made 140 KB strings. 100 keeps
 * an answer near 60 KB with room for longer fields; only users with many calls need more requests.
 */
export const DEFAULT_PAGE_SIZE = 100;
/**
 * Rows per message: small enough that a batch dies young in memory (a batch of 500 lived through
 * two young-generation collections and was promoted, and the old generation grew with the day),
 * large enough to be cheap.
 */
export const DEFAULT_BATCH_SIZE = 100;

/** Which API a day's calls come from. */
export type CallSource = "call-reports" | "call-events";

/** Pages one day may take before it is taken for a loop: at 100 calls a page, 2.5 million calls. */
export const MAX_PAGES_PER_DAY = 25_000;

/** A list that pages forever, or gives records already read: the day stops, nothing of it kept. */
export class PagingError extends PipelineError {}

/** How far a day's reading has come: for a node's status. */
export interface DayProgress {
  /** Pages read so far, of every list of the day. */
  pages: number;
  /** Calls read so far. */
  calls: number;
}

/**
 * The pages of one day, across all its lists: counts them against a generous bound and reports
 * progress. The bound and the repeat check below are what ends a day on a server that never says
 * it is done.
 */
export class DayPaging {
  pages = 0;
  calls = 0;
  /** An answer carried a `nextPageMarker`: this API pages with markers, `page` is not to be trusted. */
  markers = false;

  constructor(
    readonly date: string,
    private readonly maxPages = MAX_PAGES_PER_DAY,
    private readonly onProgress?: (progress: DayProgress) => void,
  ) {}

  /** One page of `list` was read, with `items` records on it. */
  read(list: ListRead, items: number): void {
    if (this.pages >= this.maxPages) {
      throw this.error(list.page + 1, list.what, `passed the limit of ${this.maxPages} pages a day`, "GW_GOTO_TOO_MANY_PAGES", "too many pages");
    }
    list.page++;
    this.pages++;
    if (list.holdsCalls) this.calls += items;
    this.onProgress?.({ pages: this.pages, calls: this.calls });
  }

  /** The day ends at `page` of the list `what`: the one page the message names. */
  error(page: number, what: string, problem: string, code: string, status: string): PagingError {
    return new PagingError(`GoTo's call data for ${this.date}: page ${page} of ${what} ${problem}, so the day was stopped there and nothing of it was kept; it looks like GoTo is not paging as expected`, {
      status,
      code,
    });
  }
}

/**
 * A set of fingerprints in one Float64Array (open addressing, 0 for an empty slot): a `Set` of
 * these numbers kept a heap object for each, and a user's list of 200,000 calls piled them up in
 * the old generation until a full collection.
 */
export class PrintSet {
  private slots = new Float64Array(1024);
  private count = 0;

  get size(): number {
    return this.count;
  }

  has(print: number): boolean {
    const key = print === 0 ? 1 : print;
    const mask = this.slots.length - 1;
    for (let i = this.index(key, mask); ; i = (i + 1) & mask) {
      const slot = this.slots[i]!;
      if (slot === key) return true;
      if (slot === 0) return false;
    }
  }

  add(print: number): void {
    const key = print === 0 ? 1 : print;
    if ((this.count + 1) * 2 > this.slots.length) this.grow();
    const mask = this.slots.length - 1;
    for (let i = this.index(key, mask); ; i = (i + 1) & mask) {
      const slot = this.slots[i]!;
      if (slot === key) return;
      if (slot === 0) {
        this.slots[i] = key;
        this.count++;
        return;
      }
    }
  }

  clear(): void {
    this.slots = new Float64Array(1024);
    this.count = 0;
  }

  private index(key: number, mask: number): number {
    // The fingerprint's low bits are already well mixed.
    return (key % 0x40000000) & mask;
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Float64Array(old.length * 2);
    this.count = 0;
    for (const slot of old) if (slot !== 0) this.add(slot);
  }
}

/** One list of a day (the users with calls, or one user's calls): what it gave so far. */
export class ListRead {
  /** Pages read of this list. */
  page = 0;
  /** Fingerprints of the records read (see `fingerprint`). */
  private readonly seen = new PrintSet();
  private readonly markers = new Set<string>();
  /**
   * What was read may be all the list holds: its count came, or a page longer than asked (a server
   * that ignores the page size and gives everything). A repeat of it then ends the list.
   */
  mayBeWhole = false;

  constructor(
    readonly what: string,
    /** False for the list of users: its items are not calls. */
    readonly holdsCalls = true,
  ) {}

  /** The list has ended: what it gave need not be remembered any longer. */
  release(): void {
    this.seen.clear();
    this.markers.clear();
  }

  /**
   * The records of the next page: none may be one already read (a server that ignores the page
   * asked for gives the first one again), or the day would hold a call twice. A page of nothing
   * but records already read, once what was read may be the whole list, is the list's end: false.
   */
  check(paging: DayPaging, prints: number[], marker: string | undefined): boolean {
    const page = this.page + 1;
    if (this.mayBeWhole && prints.length > 0 && prints.every((print) => this.seen.has(print))) return false;
    for (const print of prints) {
      if (this.seen.has(print)) throw paging.error(page, this.what, "repeated records already read", "GW_GOTO_PAGE_REPEATED", "page repeated");
    }
    if (marker !== undefined && this.markers.has(marker)) throw paging.error(page, this.what, "came with a page marker already given", "GW_GOTO_PAGE_REPEATED", "page repeated");
    for (const print of prints) this.seen.add(print);
    if (marker !== undefined) this.markers.add(marker);
    return true;
  }
}

/**
 * 53-bit fingerprints of records (two 32-bit FNV-1a style hashes over their fields), fed field by
 * field so that no key text is built: a set of these numbers stays small where a set of key texts
 * kept every page's strings in memory (50 MB more at the peak of a day of 100,000 calls). The
 * chance that two of a day's calls share one, which would stop the day as if a page repeated, is
 * below one in a million.
 */
let printA = 0;
let printB = 0;

function fingerprint(...fields: unknown[]): number {
  printA = 0x811c9dc5;
  printB = 0x9747b28c;
  for (const field of fields) {
    if (typeof field === "string") for (let i = 0; i < field.length; i++) mix(field.charCodeAt(i));
    else if (typeof field === "number" && Number.isSafeInteger(field)) {
      mix(field & 0xffff);
      mix((field >>> 16) & 0xffff);
      mix(Math.floor(field / 0x100000000) & 0x1fffff);
    } else if (field !== null && field !== undefined) fingerprintText(String(field));
    mix(0x10000); // between fields, beyond any character
  }
  return (printA >>> 0) * 0x200000 + ((printB >>> 0) & 0x1fffff);
}

function fingerprintText(text: string): void {
  for (let i = 0; i < text.length; i++) mix(text.charCodeAt(i));
}

function mix(code: number): void {
  printA = Math.imul(printA ^ code, 0x01000193);
  printB = Math.imul(printB ^ code, 0x5bd1e995);
  printB ^= printB >>> 15;
}

/** Where the next page of a list is: `page` from 0, or the marker the last answer gave. */
type Cursor = { page: number; marker?: undefined } | { marker: string; page?: undefined };

interface PageAnswer<T> {
  items: T[];
  /** `nextPageMarker`, when the answer carried a non-empty one. */
  marker?: string;
  /** The answer had a `nextPageMarker` field, empty or null too: this API pages with markers. */
  markers: boolean;
}

interface ListOptions<T> extends CallReportsOptions {
  paging: DayPaging;
  list: ListRead;
  /** A record's fingerprint. */
  key: (item: T) => number;
  /** Items the list should have (a user's `volume`); a short page ends it only once they came. */
  expected?: number;
  /** Items read of it before this cursor. */
  seen?: number;
}

/**
 * One list page by page from `cursor`: by `nextPageMarker` whenever an answer carries one, else
 * by `page`. Paging by `page` ends at an empty page or a short one, but a list with an `expected`
 * count is read on past short pages until the count came (a server may cap the page below what
 * was asked). A page that only repeats what was read, once that may be the whole list, ends it.
 */
async function* listPages<T>(client: HttpClient, path: string, window: CallWindow, cursor: Cursor, options: ListOptions<T>): AsyncGenerator<T[]> {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  let seen = options.seen ?? 0;
  for (let at: Cursor | undefined = cursor; at; ) {
    const answer = await fetchPage<T>(client, path, window, at, options);
    if (!accept(answer, pageSize, seen, options)) return;
    seen += answer.items.length;
    if (answer.items.length > 0) yield answer.items;
    at = nextCursor(at, answer, pageSize, seen, options.expected, options.paging.markers);
  }
}

/**
 * Checks a page against what its list gave before (`seen` records), and counts it. False when the
 * page brought nothing new after what may be the list's end: the list is over, nothing to keep.
 */
function accept<T>(answer: PageAnswer<T>, pageSize: number, seen: number, options: Pick<ListOptions<T>, "paging" | "list" | "key" | "expected">): boolean {
  if (answer.markers) options.paging.markers = true;
  const fresh = options.list.check(options.paging, answer.items.map(options.key), answer.marker);
  options.paging.read(options.list, fresh ? answer.items.length : 0);
  if (!fresh) return false;
  const read = seen + answer.items.length;
  options.list.mayBeWhole = answer.items.length > pageSize || (options.expected !== undefined && read >= options.expected);
  return true;
}

function nextCursor(at: Cursor, answer: PageAnswer<unknown>, pageSize: number, seen: number, expected?: number, markers = false): Cursor | undefined {
  if (answer.marker !== undefined) return { marker: answer.marker };
  // An API that pages with markers ends a list with an answer without one, or an empty or null one.
  if (at.marker !== undefined || markers) return undefined;
  if (answer.items.length === 0) return undefined;
  // A short page ends a list, unless its count says more is to come from a server capping pages.
  if (answer.items.length < pageSize && (expected === undefined || seen >= expected)) return undefined;
  return { page: at.page + 1 };
}

const USERS_PATH = "reports/user-activity";

/** The users with calls in the window, page by page (`GET /reports/user-activity`). */
export async function* usersWithActivity(
  client: HttpClient,
  window: CallWindow,
  options: CallReportsOptions & { paging: DayPaging },
): AsyncGenerator<UserActivitySummary[]> {
  yield* listPages<UserActivitySummary>(client, USERS_PATH, window, { page: 0 }, { ...options, list: new ListRead("the users with calls", false), key: (u) => fingerprint(u?.userId) });
}

/** Requests of one export in flight at once: enough to hide GoTo's latency within its rate limit. */
const IN_FLIGHT = 2;

/**
 * A call's identity in its user's list (the API gives no id): when it started, answered and ended,
 * how long, which way, how it ended, and the parties' numbers. Two records alike in all of these
 * are the same call.
 */
function callKey(call: UserActivityCall): number {
  return fingerprint(call.startTime, call.answerTime, call.endTime, call.duration, call.direction, call.disposition, call.caller?.number, call.callee?.number);
}

interface UserRead {
  user: UserActivitySummary;
  list: ListRead;
  expected?: number;
  /** Calls read so far. */
  total: number;
  /** The next page by number, when the user's list is read on by `page`. */
  nextPage: number;
  /** Read to its end, or handed over to its markers: later planned pages are not used. */
  done: boolean;
}

/**
 * Every call of the window as call-log rows, user after user in the API's order, one array per
 * page read. The summary's volume says how many pages each user has, so the next pages are asked
 * for while this one is written (at most IN_FLIGHT at once, delivered in order): memory stays at a
 * few pages whatever the size of the day. Once an answer carries a `nextPageMarker`, the API pages
 * by markers: a user's further pages then follow its markers one by one, and no page is asked
 * for by number ahead of time. A user with more calls than the summary said is read on until its
 * list ends.
 */
export async function* callReportRows(
  client: HttpClient,
  window: CallWindow,
  options: CallReportsOptions & { paging?: DayPaging } = {},
): AsyncGenerator<CallLogRow[]> {
  const pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
  const paging = options.paging ?? new DayPaging(isoSeconds(window.start));
  for await (const users of usersWithActivity(client, window, { ...options, paging })) {
    const planned = users
      .filter((user) => user?.userId)
      .flatMap((user) => {
        const expected = typeof user.dataValues?.volume === "number" ? user.dataValues.volume : undefined;
        const read: UserRead = { user, list: new ListRead(`the calls of ${user.userName ?? user.userId}`), expected, total: 0, nextPage: 0, done: false };
        const count = Math.max(1, Math.ceil((expected ?? 0) / pageSize));
        return Array.from({ length: count }, (_, page) => ({ read, page, last: page === count - 1 }));
      });
    const tasks = planned.map((p) => async () => {
      // Pages by number are asked for ahead only while no answer spoke of markers.
      if (p.page > 0 && (paging.markers || p.read.done)) return { ...p, answer: undefined };
      return { ...p, answer: await fetchPage<UserActivityCall>(client, userPath(p.read.user.userId), window, { page: p.page }, options) };
    });
    for await (const got of inOrder(tasks, IN_FLIGHT)) {
      const read = got.read;
      if (read.done) continue;
      if (got.answer) {
        if (!accept(got.answer, pageSize, read.total, { paging, list: read.list, key: callKey, expected: read.expected })) {
          read.done = true;
          read.list.release();
          continue;
        }
        read.total += got.answer.items.length;
        read.nextPage = got.page + 1;
        if (got.answer.items.length) yield got.answer.items.map((call) => callReportRow(call, read.user));
        const next = nextCursor({ page: got.page }, got.answer, pageSize, read.total, read.expected, paging.markers);
        if (!next) {
          read.done = true;
          read.list.release();
          continue;
        }
        if (next.marker === undefined && !got.last) continue;
        read.done = true;
        yield* rest(read, next);
      } else if (got.last) {
        read.done = true;
        yield* rest(read, { page: read.nextPage });
      }
    }
  }

  /** A user's calls beyond the planned pages, one page after the other. */
  async function* rest(read: UserRead, cursor: Cursor): AsyncGenerator<CallLogRow[]> {
    const more = listPages<UserActivityCall>(client, userPath(read.user.userId), window, cursor, { ...options, paging, list: read.list, key: callKey, expected: read.expected, seen: read.total });
    for await (const calls of more) yield calls.map((call) => callReportRow(call, read.user));
    read.list.release();
  }
}

function userPath(userId: string): string {
  return `reports/user-activity/${encodeURIComponent(userId)}`;
}

async function fetchPage<T>(client: HttpClient, path: string, window: CallWindow, at: Cursor, options: CallReportsOptions): Promise<PageAnswer<T>> {
  const body = await client.json<CallReportsPage<T>>({
    path,
    query: {
      startTime: isoSeconds(window.start),
      endTime: isoSeconds(window.end),
      ...(at.marker !== undefined ? { pageMarker: at.marker } : { page: at.page }),
      pageSize: options.pageSize ?? DEFAULT_PAGE_SIZE,
      accountKey: options.accountKey,
    },
    signal: options.signal,
  });
  const marker = typeof body?.nextPageMarker === "string" && body.nextPageMarker ? body.nextPageMarker : undefined;
  const markers = body !== null && typeof body === "object" && "nextPageMarker" in body;
  return { items: Array.isArray(body?.items) ? body.items : [], marker, markers };
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
export async function* callEventRows(
  client: HttpClient,
  window: CallWindow,
  accountKey: string,
  options: CallReportsOptions & { paging?: DayPaging } = {},
): AsyncGenerator<CallLogRow[]> {
  const paging = options.paging ?? new DayPaging(isoSeconds(window.start));
  const list = new ListRead("the Call Events Report");
  const key = (s: CallEventsSummary) => fingerprint(s?.conversationSpaceId ?? JSON.stringify(s));
  for (let marker: string | undefined, first = true; first || marker; first = false) {
    const body = await client.json<CallEventsPage>({
      path: "report-summaries",
      query: { accountKey, startTime: isoSeconds(window.start), endTime: isoSeconds(window.end), pageSize: options.pageSize ?? DEFAULT_PAGE_SIZE, pageMarker: marker },
      signal: options.signal,
    });
    const items = Array.isArray(body?.items) ? body.items : [];
    marker = body?.nextPageMarker || undefined;
    if (!accept({ items, marker, markers: true }, options.pageSize ?? DEFAULT_PAGE_SIZE, 0, { paging, list, key })) return;
    if (items.length > 0) yield items.map(callEventRow);
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
  options: CallReportsOptions & {
    batchSize?: number;
    source?: CallSource;
    accountKey?: string;
    /** Pages the day may take before it is stopped as a loop. */
    maxPages?: number;
    /** Called after every page read. */
    onProgress?: (progress: DayProgress) => void;
  } = {},
): AsyncGenerator<CallLogBatch> {
  const batchSize = Math.max(1, options.batchSize ?? DEFAULT_BATCH_SIZE);
  const window = { start: day.start, end: day.end };
  const paging = new DayPaging(day.date, options.maxPages, options.onProgress);
  const source =
    options.source === "call-events"
      ? callEventRows(client, window, options.accountKey ?? "", { ...options, paging })
      : callReportRows(client, window, { ...options, paging });
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
