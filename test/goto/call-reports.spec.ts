import assert from "node:assert/strict";
import { HttpClient } from "../../src/core/http/client";
import type { TokenManager } from "../../src/core/tokens/token-manager";
import { GoToApis } from "../../src/goto/api";
import { DayProgress, PagingError, callLogsForDay, callReportRows } from "../../src/goto/call-reports";
import { calendarDay } from "../../src/goto/days";
import type { CallLogRow } from "../../src/goto/types";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { fileStore, manager } from "../support/tokens";

describe("GoTo call reports", () => {
  const sandbox = new Sandbox({ goto: { rotateEvery: 1_000_000 } });
  let apis: GoToApis;
  let tokens: TokenManager;
  const day = calendarDay("2026-11-18", "Europe/Brussels");

  before(async () => {
    await sandbox.listen();
    sandbox.goto.calls.setVolume("2026-11-17", 150);
    sandbox.goto.calls.setVolume("2026-11-18", 400);
  });
  after(() => sandbox.close());
  beforeEach(async () => {
    tokens = manager({ provider: "goto", sandboxUrl: sandbox.url, store: fileStore(), ...GOTO_DEMO_CLIENT });
    await tokens.seed(sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId));
    apis = new GoToApis({ auth: tokens, apiHost: `${sandbox.url}/goto/api`, requestsPerSecond: 1000 });
    sandbox.goto.calls.rateLimit = null;
    sandbox.goto.calls.maxPageSize = 10_000;
    sandbox.goto.calls.paging = "page";
    sandbox.server.clearFaults();
  });
  afterEach(() => apis.close());

  async function collect(client: HttpClient, pageSize: number): Promise<CallLogRow[]> {
    const rows: CallLogRow[] = [];
    for await (const page of callReportRows(client, day, { pageSize })) rows.push(...page);
    return rows;
  }

  function countBy<T>(items: T[], key: (item: T) => string): Map<string, number> {
    const counts = new Map<string, number>();
    for (const item of items) counts.set(key(item), (counts.get(key(item)) ?? 0) + 1);
    return counts;
  }

  const key = (r: { startTime: string | null; callerNumber?: string; caller?: { number: string } }) => `${r.startTime}|${r.callerNumber ?? r.caller?.number}`;

  it("reads every page of users and of each user's calls", async () => {
    const expected = sandbox.goto.calls.callsBetween(day.start, day.end);
    sandbox.server.resetStats();
    const rows = await collect(apis.api("call-reports"), 7);
    assert.equal(rows.length, expected.length);
    assert.deepEqual(rows.map(key).sort(), expected.map(key).sort());
    assert.ok(sandbox.server.counter("goto call-reports user pages") >= 2, "the 12 users came in pages of 7");
    assert.ok(sandbox.server.counter("goto call-reports call pages") > sandbox.goto.calls.users.length, "busy users' calls took several pages");
  });

  it("keeps reading a user's calls when the server gives shorter pages than asked, up to the calls the summary counts", async () => {
    // Every user fits on the capped page of users; each user's calls take several capped pages.
    sandbox.goto.calls.maxPageSize = sandbox.goto.calls.users.length;
    const rows = await collect(apis.api("call-reports"), 50);
    assert.equal(rows.length, sandbox.goto.calls.callsBetween(day.start, day.end).length);
  });

  it("asks only for the calls of the window: from local midnight to the next", async () => {
    const rows = await collect(apis.api("call-reports"), 1000);
    assert.ok(rows.length > 0);
    for (const row of rows) {
      const t = Date.parse(row.startTime);
      assert.ok(t >= day.start.getTime() && t < day.end.getTime(), `${row.startTime} is outside ${day.date}`);
    }
  });

  it("waits out 429s when the server allows fewer requests than the client sends", async () => {
    sandbox.goto.calls.rateLimit = 3;
    sandbox.server.resetStats();
    const rows = await collect(apis.api("call-reports"), 1000);
    assert.equal(rows.length, sandbox.goto.calls.callsBetween(day.start, day.end).length);
    assert.ok(sandbox.server.counter("goto call-reports 429") > 0, "the sandbox answered 429 at least once");
  });

  it("stays under GoTo's 10 requests per second, so the API never answers 429", async () => {
    sandbox.goto.calls.rateLimit = 10;
    const limited = new GoToApis({ auth: tokens, apiHost: `${sandbox.url}/goto/api` });
    sandbox.server.resetStats();
    const rows = await collect(limited.api("call-reports"), 20);
    assert.equal(rows.length, sandbox.goto.calls.callsBetween(day.start, day.end).length);
    assert.ok(sandbox.server.counter("goto call-reports requests") > 20, "enough requests to hit the limit");
    assert.equal(sandbox.server.counter("goto call-reports 429"), 0);
    await limited.close();
  });

  it("batches a day for messages, the last one marked, and an empty day as one empty batch", async () => {
    const batches = [];
    for await (const batch of callLogsForDay(apis.api("call-reports"), day, { batchSize: 100 })) batches.push(batch);
    const total = sandbox.goto.calls.callsBetween(day.start, day.end).length;
    assert.equal(batches.length, Math.ceil(total / 100));
    assert.deepEqual(batches.map((b) => b.index), batches.map((_, i) => i));
    assert.deepEqual(batches.map((b) => b.last), batches.map((_, i) => i === batches.length - 1));
    assert.equal(batches.at(-1)!.total, total);

    sandbox.goto.calls.setVolume("2026-11-10", 0);
    sandbox.goto.calls.setVolume("2026-11-11", 0);
    const empty = [];
    for await (const batch of callLogsForDay(apis.api("call-reports"), calendarDay("2026-11-10", "UTC"))) empty.push(batch);
    assert.deepEqual(empty.map((b) => [b.rows.length, b.last]), [[0, true]]);
  });

  describe("paging that a server could make endless", () => {
    async function readDay(options: Parameters<typeof callLogsForDay>[2] = {}): Promise<CallLogRow[]> {
      const rows: CallLogRow[] = [];
      for await (const batch of callLogsForDay(apis.api("call-reports"), day, { batchSize: 1000, ...options })) rows.push(...batch.rows);
      return rows;
    }
    const rowKey = (r: CallLogRow) => `${r.user}|${r.startTime}|${r.callerNumber}|${r.calleeNumber}|${r.duration}`;

    it("follows nextPageMarker with pageMarker when the answers carry one, and reads every call once", async () => {
      sandbox.goto.calls.paging = "marker";
      sandbox.server.resetStats();
      const rows = await readDay({ pageSize: 7 });
      const expected = sandbox.goto.calls.callsBetween(day.start, day.end);
      assert.equal(rows.length, expected.length);
      assert.equal(new Set(rows.map(rowKey)).size, rows.length, "no call twice");
      assert.deepEqual(rows.map((r) => r.startTime).sort(), expected.map((c) => c.startTime).sort());
      assert.ok(sandbox.server.counter("goto call-reports call pages") > sandbox.goto.calls.users.length, "busy users' calls took several pages");
    });

    it("follows markers also when the server gives shorter pages than asked", async () => {
      sandbox.goto.calls.paging = "marker";
      sandbox.goto.calls.maxPageSize = 5;
      const rows = await readDay({ pageSize: 50 });
      assert.equal(rows.length, sandbox.goto.calls.callsBetween(day.start, day.end).length);
      assert.equal(new Set(rows.map(rowKey)).size, rows.length);
    });

    it("stops the day with an error naming day and page when the server ignores `page`", async () => {
      sandbox.goto.calls.paging = "ignore-page";
      sandbox.server.resetStats();
      const err = await readDay({ pageSize: 7 }).then(
        () => assert.fail("the day should fail"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof PagingError, String(err));
      assert.equal(err.code, "GW_GOTO_PAGE_REPEATED");
      assert.match(err.message, /^GoTo's call data for 2026-11-18: page 2 of the (users with calls|calls of .+) repeated records already read, so the day was stopped there and nothing of it was kept/);
      assert.equal(err.message.match(/\bpages? \d/g)?.length, 1, `one page named: ${err.message}`);
      assert.ok(sandbox.server.counter("goto call-reports requests") < 10, "it stopped at once");
    });

    it("writes the whole day from a server that ignores `page`, each list ending on a page shorter than asked", async () => {
      sandbox.goto.calls.paging = "ignore-page";
      sandbox.server.resetStats();
      const rows = await readDay({ pageSize: 250 });
      const expected = sandbox.goto.calls.callsBetween(day.start, day.end);
      assert.equal(rows.length, expected.length);
      assert.equal(new Set(rows.map(rowKey)).size, rows.length, "no call twice");
      assert.equal(sandbox.server.counter("goto call-reports user pages"), 1, "the short list of users was read once");
    });

    it("writes the whole day from a server that ignores every paging parameter and answers each list whole", async () => {
      sandbox.goto.calls.paging = "unpaged";
      const rows = await readDay({ pageSize: 7 });
      assert.equal(rows.length, sandbox.goto.calls.callsBetween(day.start, day.end).length);
      assert.equal(new Set(rows.map(rowKey)).size, rows.length, "no call twice");
    });

    it("takes a repeated page after a user's counted calls all came as the end of the list", async () => {
      sandbox.goto.calls.paging = "ignore-page";
      const busiest = Math.max(...[...countBy(sandbox.goto.calls.callsBetween(day.start, day.end), (c) => c.userId).values()]);
      const rows = await readDay({ pageSize: busiest });
      assert.equal(rows.length, sandbox.goto.calls.callsBetween(day.start, day.end).length);
    });

    for (const paging of ["marker-empty", "marker-null"] as const) {
      it(`ends a list at ${paging === "marker-empty" ? "an empty" : "a null"} nextPageMarker, on a single page and after several`, async () => {
        sandbox.goto.calls.paging = paging;
        const expected = sandbox.goto.calls.callsBetween(day.start, day.end).length;
        for (const pageSize of [1000, 7]) {
          const rows = await readDay({ pageSize });
          assert.equal(rows.length, expected, `pages of ${pageSize}`);
          assert.equal(new Set(rows.map(rowKey)).size, rows.length, "no call twice");
        }
      });
    }

    it("still stops a day when a page repeats before a user's counted calls came", async () => {
      sandbox.goto.calls.paging = "ignore-page";
      sandbox.goto.calls.maxPageSize = 5;
      await assert.rejects(readDay({ pageSize: 50 }), (err: unknown) => err instanceof PagingError && /: page 2 of the calls of .+ repeated records already read, so the day was stopped there/.test(err.message));
    });

    it("stops the day that passes the page bound, naming day and page", async () => {
      const err = await readDay({ pageSize: 7, maxPages: 20 }).then(
        () => assert.fail("the day should fail"),
        (e: unknown) => e,
      );
      assert.ok(err instanceof PagingError);
      assert.equal(err.code, "GW_GOTO_TOO_MANY_PAGES");
      assert.match(err.message, /^GoTo's call data for 2026-11-18: page \d+ of the calls of .+ passed the limit of 20 pages a day, so the day was stopped there and nothing of it was kept/);
      assert.equal(err.message.match(/\bpage \d/g)?.length, 1, `one page named: ${err.message}`);
    });

    it("stops at a page marker given twice", async () => {
      sandbox.goto.calls.paging = "marker";
      const [a, b] = sandbox.goto.calls.users;
      sandbox.server.inject({ method: "GET", path: /\/user-activity$/, status: 200, json: { items: [{ userId: a!.userId, userName: a!.userName }], nextPageMarker: "again" } });
      sandbox.server.inject({ method: "GET", path: /\/user-activity$/, status: 200, json: { items: [{ userId: b!.userId, userName: b!.userName }], nextPageMarker: "again" } });
      await assert.rejects(readDay(), /: page 2 of the users with calls came with a page marker already given, so the day was stopped there/);
    });

    it("reports the pages and calls read as it goes", async () => {
      const seen: DayProgress[] = [];
      const rows = await readDay({ pageSize: 20, onProgress: (p) => seen.push({ ...p }) });
      assert.ok(seen.length > 5);
      assert.deepEqual(seen.map((p) => p.pages), seen.map((_, i) => i + 1));
      assert.equal(seen.at(-1)!.calls, rows.length);
    });
  });

  it("reads the account-wide Call Events Report page by page with its markers", async () => {
    const rows = [];
    for await (const batch of callLogsForDay(apis.api("call-events-report"), day, { source: "call-events", accountKey: await apis.accountKey(), pageSize: 50, batchSize: 1000 })) rows.push(...batch.rows);
    assert.equal(rows.length, sandbox.goto.calls.callsBetween(day.start, day.end).length);
  });

  it("takes the account key from /me's own field, written as a 19-digit number after an object with a key of its own", async () => {
    sandbox.goto.admin.meShape = "nested";
    const tokens = manager({ provider: "goto", sandboxUrl: sandbox.url, store: fileStore(), ...GOTO_DEMO_CLIENT });
    await tokens.seed(sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId));
    const found = new GoToApis({ auth: tokens, apiHost: `${sandbox.url}/goto/api` });
    try {
      assert.equal(await found.accountKey(), sandbox.goto.accountKey);
    } finally {
      sandbox.goto.admin.meShape = "plain";
      await found.close();
    }
  });

  it("finds the account key through the Admin API once, and keeps it as text", async () => {
    const kept: string[] = [];
    const tokens = manager({ provider: "goto", sandboxUrl: sandbox.url, store: fileStore(), ...GOTO_DEMO_CLIENT });
    await tokens.seed(sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId));
    const found = new GoToApis({ auth: tokens, apiHost: `${sandbox.url}/goto/api`, keep: { get: async () => kept[0], set: async (v) => void kept.push(v) } });
    sandbox.server.resetStats();
    assert.equal(await found.accountKey(), sandbox.goto.accountKey);
    assert.equal(await found.accountKey(), sandbox.goto.accountKey);
    assert.deepEqual(kept, [sandbox.goto.accountKey]);
    await found.close();
  });
});
