import assert from "node:assert/strict";
import { Database } from "../../src/core/db/database";
import { Sandbox } from "../../src/sandbox";
import { TeamleaderApi } from "../../src/teamleader/api";
import { SyncTables } from "../../src/teamleader/tables";
import { SyncError, TeamleaderSync } from "../../src/teamleader/sync";
import { SYNC_RESOURCES } from "../../src/teamleader/types";
import { DatabaseKind, openDatabase, sandboxTokens } from "../support/teamleader";

const VOLUMES = { companies: 250, contacts: 120, departments: 3, events: 30, invoices: 150, projects: 40, users: 12, projects_v2: 45, deals: 130, quotations: 60, time_tracking: 210, tasks: 70, products: 140 };

for (const kind of ["server", "embedded"] as DatabaseKind[]) {
  describe(`Teamleader sync into PostgreSQL (${kind === "server" ? "PostgreSQL server" : "embedded PostgreSQL"})`, function () {
    this.timeout(120_000);
    const sandbox = new Sandbox({ teamleader: { volumes: VOLUMES } });
    let db: Database;
    let drop: () => Promise<void>;
    let api: TeamleaderApi;
    let prefixCount = 0;

    before(async () => {
      await sandbox.listen();
      ({ db, drop } = await openDatabase(kind));
      api = new TeamleaderApi({ apiHost: `${sandbox.url}/teamleader/api`, auth: await sandboxTokens(sandbox, db) });
    });
    after(async () => {
      await api.close();
      await drop();
      await sandbox.close();
    });
    beforeEach(() => {
      sandbox.teamleader.data.reset(VOLUMES);
      sandbox.server.resetStats();
      sandbox.server.clearFaults();
      sandbox.teamleader.resetQuota();
    });

    /** A sync into tables of their own (a fresh prefix), so tests do not see each other's rows. */
    function freshSync(settings = {}) {
      const tables = new SyncTables(db, `t${++prefixCount}_${kind.slice(0, 3)}_`);
      return { tables, sync: new TeamleaderSync(api, tables, { batchSize: 100, ...settings }) };
    }

    async function rows(tables: SyncTables, resource: string, where = "true") {
      const { rows } = await db.query(`SELECT id, record, updated_at, synced_at, deleted_at FROM ${tables.prefix}${resource} WHERE ${where} ORDER BY id`);
      return rows;
    }

    it("a full sync writes every record of every resource once, with updated_at and custom fields", async () => {
      const { tables, sync } = freshSync();
      const summary = await sync.run({ resources: SYNC_RESOURCES, mode: "full" });
      for (const resource of SYNC_RESOURCES) {
        const stored = await rows(tables, resource);
        const expected = sandbox.teamleader.data.liveIds(resource).sort();
        assert.deepEqual(stored.map((r) => r.id), expected, `${resource}: exactly the records Teamleader lists`);
        assert.equal(summary.resources[resource]!.inserted, expected.length);
        assert.equal(summary.resources[resource]!.fetched, expected.length);
        assert.equal(summary.resources[resource]!.status, "synced");
      }
      const company = (await rows(tables, "companies"))[0];
      assert.equal(new Date(company.updated_at).getTime(), Date.parse(company.record.updated_at), "the API's updated_at in its column");
      assert.ok(Array.isArray(company.record.custom_fields), "custom fields came with the list call");
      assert.equal(sandbox.server.counter("teamleader companies.info"), 0, "no .info call per record");
      assert.equal(sandbox.server.counter("teamleader departments.list"), 1, "departments.list has no paging: one call");
      assert.equal(sandbox.server.counter("teamleader companies.list"), 3, "250 companies in pages of 100");
      assert.equal((await rows(tables, "events"))[0].updated_at, null, "events have no updated_at");
    });

    it("a delta run picks up only changes and new records, asking with +00:00 offsets", async () => {
      const { tables, sync } = freshSync();
      await sync.run({ resources: ["companies", "users"], mode: "full" });
      const changed = sandbox.teamleader.data.change("companies", 4);
      const added = sandbox.teamleader.data.add("companies", 2);
      const before = await rows(tables, "companies");
      const summary = await sync.run({ resources: ["companies", "users"], mode: "delta" });
      const companies = summary.resources.companies!;
      assert.equal(companies.mode, "delta");
      assert.equal(companies.inserted, 2);
      assert.equal(companies.updated, 4);
      assert.ok(companies.fetched < 20, `only changes were fetched (${companies.fetched} of ${before.length + 2})`);
      assert.equal(summary.resources.users!.mode, "full", "users have no updated_since: swept in full");
      const after = await rows(tables, "companies");
      assert.equal(after.length, before.length + 2);
      for (const id of changed) {
        const was = before.find((r) => r.id === id);
        const now = after.find((r) => r.id === id);
        assert.notDeepEqual(now.record, was.record, "a changed record is rewritten");
        assert.ok(new Date(now.updated_at) > new Date(was.updated_at));
      }
      for (const id of added) assert.ok(after.some((r) => r.id === id));
      const untouched = after.find((r) => !changed.includes(r.id) && !added.includes(r.id));
      assert.deepEqual(untouched.synced_at, before.find((r) => r.id === untouched.id).synced_at, "an unchanged record was not fetched again");

      const again = await sync.run({ resources: ["companies"], mode: "delta" });
      assert.equal(again.resources.companies!.inserted + again.resources.companies!.updated, 0, "nothing new the second time");
    });

    it("a full sweep marks a deleted record, and does not mark one that offset paging skipped", async () => {
      const { tables, sync } = freshSync();
      await sync.run({ resources: ["companies"], mode: "full" });
      const [gone] = sandbox.teamleader.data.remove("companies", 1);
      // Mid-sweep, a record on the first page disappears: every later record moves up one place,
      // so the first record of page 2 slides onto page 1, which was read already.
      const firstPage = sandbox.teamleader.data.list("companies", { sort: { field: "added_at", order: "asc" }, page: { size: 100, number: 1 } });
      const skipped = sandbox.teamleader.data.list("companies", { sort: { field: "added_at", order: "asc" }, page: { size: 100, number: 2 } })[0]!.id as string;
      const summary = await sync.run({
        resources: ["companies"],
        mode: "full",
        onProgress: (p) => {
          if (p.page === 1) sandbox.teamleader.data.removeIds("companies", [firstPage[5]!.id as string]);
        },
      });
      assert.equal(summary.resources.companies!.deleted, 1, "only the record deleted before the sweep");
      const deleted = await rows(tables, "companies", "deleted_at IS NOT NULL");
      assert.deepEqual(deleted.map((r) => r.id), [gone]);
      assert.equal((await rows(tables, "companies", `id = '${skipped}'`))[0].deleted_at, null, "the skipped record was looked up by id, not marked");
      const live = await rows(tables, "companies", "deleted_at IS NULL");
      assert.equal(live.length, sandbox.teamleader.data.live("companies") + 1, "the one deleted mid-sweep is marked by the next sweep");

      const next = await sync.run({ resources: ["companies"], mode: "full" });
      assert.equal(next.resources.companies!.deleted, 1);
      assert.deepEqual((await rows(tables, "companies", "deleted_at IS NULL")).map((r) => r.id), sandbox.teamleader.data.liveIds("companies").sort());
    });

    it("a full sweep while records disappear between pages marks exactly the removed records, in every resource", async () => {
      const { tables, sync } = freshSync({ pageSize: 10 });
      sandbox.teamleader.rateLimit.enabled = false;
      await sync.run({ resources: SYNC_RESOURCES, mode: "full" });
      const removedBefore = new Map(SYNC_RESOURCES.map((r) => [r, sandbox.teamleader.data.remove(r, 1)]));
      sandbox.teamleader.vanished.clear();
      sandbox.teamleader.vanish = { afterPage: 1, count: 3 };
      sandbox.teamleader.rateLimit.enabled = false; // pages of 10 ask more than 200 times a minute
      try {
        await sync.run({ resources: SYNC_RESOURCES, mode: "full" });
      } finally {
        sandbox.teamleader.vanish = undefined;
      }
      for (const resource of SYNC_RESOURCES) {
        const vanished = sandbox.teamleader.vanished.get(resource) ?? [];
        assert.ok(vanished.length > 0, `records of ${resource} disappeared mid-sweep`);
        const marked = (await rows(tables, resource, "deleted_at IS NOT NULL")).map((r) => r.id);
        assert.deepEqual(marked, [...removedBefore.get(resource)!].sort(), `${resource}: only the record removed before the sweep is marked, no live one`);
        const live = new Set(sandbox.teamleader.data.liveIds(resource));
        const unmarked = (await rows(tables, resource, "deleted_at IS NULL")).map((r) => r.id);
        assert.deepEqual(unmarked.filter((id) => !live.has(id)).sort(), [...vanished].sort(), `${resource}: every live record is there, unmarked`);
      }
      // The next sweep marks the ones that disappeared after being seen, and nothing else.
      await sync.run({ resources: SYNC_RESOURCES, mode: "full" }).finally(() => (sandbox.teamleader.rateLimit.enabled = true));
      for (const resource of SYNC_RESOURCES) {
        const removed = [...removedBefore.get(resource)!, ...sandbox.teamleader.vanished.get(resource)!].sort();
        assert.deepEqual((await rows(tables, resource, "deleted_at IS NOT NULL")).map((r) => r.id), removed, `${resource}: exactly the removed records are marked`);
        assert.deepEqual((await rows(tables, resource, "deleted_at IS NULL")).map((r) => r.id), sandbox.teamleader.data.liveIds(resource).sort());
      }
    });

    it("a record that comes back after being marked deleted is live again", async () => {
      const { tables, sync } = freshSync();
      await sync.run({ resources: ["users"], mode: "full" });
      const [id] = sandbox.teamleader.data.liveIds("users");
      await db.query(`UPDATE ${tables.prefix}users SET deleted_at = now() WHERE id = $1`, [id]);
      const summary = await sync.run({ resources: ["users"], mode: "full" });
      assert.equal(summary.resources.users!.updated, 1);
      assert.equal((await rows(tables, "users", `id = '${id}'`))[0].deleted_at, null);
    });

    it("a failure names the resource and the page, keeps the rows written and leaves the cursor, and the next run completes", async () => {
      const { tables, sync } = freshSync();
      const failure = await sync
        .run({
          resources: ["companies"],
          mode: "full",
          onProgress: (p) => {
            // Page 2 may already be on its way while page 1 is written: the fault hits page 2 or 3.
            if (p.page === 1) sandbox.server.inject({ path: "/teamleader/api/companies.list", status: 403, json: { errors: [{ code: 403, title: "Forbidden", status: 403, meta: { hint: "missing scope" } }] } });
          },
        })
        .then(
          () => assert.fail("the sync should have failed"),
          (err: unknown) => err,
        );
      assert.ok(failure instanceof SyncError);
      assert.equal(failure.resource, "companies");
      const page = failure.page!;
      assert.ok(page === 2 || page === 3, `failed at page ${page}`);
      assert.match(failure.message, new RegExp(`^the companies sync stopped at page ${page}: Teamleader answered 403 Forbidden to POST /teamleader/api/companies\\.list: Forbidden \\(missing scope\\)`));
      assert.equal((await rows(tables, "companies")).length, (page - 1) * 100, "the pages before it stay");
      const state = await tables.state("companies");
      assert.equal(state?.cursor, null, "the cursor did not move");
      assert.match(state?.lastError ?? "", new RegExp(`page ${page}`));

      const summary = await sync.run({ resources: ["companies"], mode: "delta" });
      assert.equal(summary.resources.companies!.mode, "full", "no cursor yet: the delta runs as a full sweep");
      assert.deepEqual((await rows(tables, "companies")).map((r) => r.id), sandbox.teamleader.data.liveIds("companies").sort());
      assert.ok((await tables.state("companies"))?.cursor instanceof Date);
    });

    it("a write the database refuses names the resource and pages, and keeps the batches written before", async () => {
      const { tables, sync } = freshSync();
      await tables.ensure();
      const onPage3 = sandbox.teamleader.data.list("companies", { sort: { field: "added_at", order: "asc" }, page: { size: 100, number: 3 } })[10]!.id;
      await db.query(`ALTER TABLE ${tables.prefix}companies ADD CONSTRAINT no_such_company CHECK (id <> '${onPage3}')`);
      await assert.rejects(sync.run({ resources: ["companies"], mode: "full" }), (err: SyncError) => {
        assert.equal(err.resource, "companies");
        assert.equal(err.page, 3);
        assert.match(err.message, /^the companies sync stopped: writing page 3 failed: database error: .*no_such_company/);
        return true;
      });
      assert.equal((await rows(tables, "companies")).length, 200);
      assert.equal((await tables.state("companies"))?.cursor, null);
    });

    it("a list whose page repeats stops with an error instead of looping", async () => {
      const { tables, sync } = freshSync();
      const page = Array.from({ length: 100 }, (_, i) => ({ id: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`, name: `Same ${i}` }));
      sandbox.server.inject({ path: "/teamleader/api/events.list", json: { data: page }, status: 200, times: 5 });
      await assert.rejects(sync.run({ resources: ["events"], mode: "full" }), (err: SyncError) => {
        assert.equal(err.page, 2);
        assert.match(err.message, /events sync stopped at page 2: events\.list page 2: Teamleader sent the same records as on page 1/);
        return true;
      });
      assert.equal(sandbox.server.counter("fault 200"), 2, "two calls, not a loop");
      assert.equal((await rows(tables, "events")).length, 100);
    });

    it("runs one sync of a resource at a time: a second trigger gets 'already running'", async () => {
      const { tables, sync } = freshSync();
      sandbox.teamleader.latencyMs = 50;
      try {
        let running!: () => void;
        const underway = new Promise<void>((r) => (running = r));
        const first = sync.run({ resources: ["companies"], mode: "full", onProgress: () => running() });
        await underway;
        const second = await new TeamleaderSync(api, new SyncTables(db, tables.prefix)).run({ resources: ["companies", "users"], mode: "full" });
        assert.equal(second.resources.companies!.status, "already running");
        assert.match(second.resources.companies!.runningOn ?? "", /pid \d+/);
        assert.equal(second.resources.users!.status, "synced", "other resources go ahead");
        assert.equal((await first).resources.companies!.status, "synced");
        const third = await sync.run({ resources: ["companies"], mode: "delta" });
        assert.equal(third.resources.companies!.status, "synced", "the lock is released afterwards");
      } finally {
        sandbox.teamleader.latencyMs = 0;
      }
    });
  });
}
