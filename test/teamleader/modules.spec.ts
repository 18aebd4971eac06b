import assert from "node:assert/strict";
import { Database } from "../../src/core/db/database";
import { Sandbox } from "../../src/sandbox";
import { TeamleaderApi } from "../../src/teamleader/api";
import { parseResources } from "../../src/teamleader/resources";
import { SyncTables } from "../../src/teamleader/tables";
import { TeamleaderSync } from "../../src/teamleader/sync";
import { openDatabase, sandboxTokens } from "../support/teamleader";

const VOLUMES = { companies: 20, contacts: 10, departments: 2, events: 5, invoices: 10, projects: 30, users: 5, projects_v2: 45, deals: 130, quotations: 60, time_tracking: 210, tasks: 70, products: 140 };
const REPORTING = ["deals", "quotations", "time_tracking", "tasks", "products"] as const;

describe("Teamleader sync of the Projects module in use and of the reporting resources", function () {
  this.timeout(120_000);
  const sandbox = new Sandbox({ teamleader: { volumes: VOLUMES } });
  let db: Database;
  let drop: () => Promise<void>;
  let api: TeamleaderApi;
  let prefixCount = 0;

  before(async () => {
    await sandbox.listen();
    ({ db, drop } = await openDatabase("server"));
    api = new TeamleaderApi({ apiHost: `${sandbox.url}/teamleader/api`, auth: await sandboxTokens(sandbox, db) });
  });
  after(async () => {
    await api.close();
    await drop();
    await sandbox.close();
  });
  beforeEach(() => {
    sandbox.teamleader.data.reset(VOLUMES);
    sandbox.teamleader.projectsVersion = "legacy";
    sandbox.teamleader.goneInfoStatus = 404;
    sandbox.server.resetStats();
    sandbox.teamleader.resetQuota();
  });

  function freshSync() {
    const tables = new SyncTables(db, `m${++prefixCount}_`);
    return { tables, sync: new TeamleaderSync(api, tables, { batchSize: 100 }) };
  }

  async function live(tables: SyncTables, table: string): Promise<string[]> {
    const { rows } = await db.query<{ id: string }>(`SELECT id FROM ${tables.prefix}${table} WHERE deleted_at IS NULL ORDER BY id`);
    return rows.map((r) => r.id);
  }

  const resources = (names: string) => {
    const parsed = parseResources(names);
    assert.ok(Array.isArray(parsed), `unknown resources: ${JSON.stringify(parsed)}`);
    return parsed;
  };

  it("syncs the current Projects module for 'projects' on an account that uses it, with full, delta and sweep", async () => {
    sandbox.teamleader.projectsVersion = "projects-v2";
    const { tables, sync } = freshSync();
    const first = await sync.run({ resources: resources("projects"), mode: "full" });
    assert.deepEqual(Object.keys(first.resources), ["projects_v2"], "the module the account uses, and only it");
    assert.deepEqual(await live(tables, "projects_v2"), sandbox.teamleader.data.liveIds("projects_v2").sort());
    assert.ok(first.resources.projects_v2!.inserted === 45);

    const removed = sandbox.teamleader.data.remove("projects_v2", 3);
    const added = sandbox.teamleader.data.add("projects_v2", 2);
    const delta = await sync.run({ resources: resources("projects"), mode: "delta" });
    // No updated_since on projects-v2: a delta run sweeps it whole.
    assert.equal(delta.resources.projects_v2!.mode, "full");
    assert.equal(delta.resources.projects_v2!.deleted, 3);
    assert.equal(delta.resources.projects_v2!.inserted, 2);
    assert.deepEqual(await live(tables, "projects_v2"), sandbox.teamleader.data.liveIds("projects_v2").sort());
    for (const id of added) assert.ok((await live(tables, "projects_v2")).includes(id));
    for (const id of removed) assert.ok(!(await live(tables, "projects_v2")).includes(id));
  });

  it("syncs the legacy module, the current one or both as the node chooses, whatever the account says", async () => {
    sandbox.teamleader.projectsVersion = "projects-v2";
    const legacy = await freshSync().sync.run({ resources: resources("projects"), mode: "full", projectsModule: "legacy" });
    assert.deepEqual(Object.keys(legacy.resources), ["projects"]);
    const both = freshSync();
    const summary = await both.sync.run({ resources: resources("companies,projects"), mode: "full", projectsModule: "both" });
    assert.deepEqual(Object.keys(summary.resources), ["companies", "projects", "projects_v2"]);
    assert.deepEqual(await live(both.tables, "projects"), sandbox.teamleader.data.liveIds("projects").sort());
    assert.deepEqual(await live(both.tables, "projects_v2"), sandbox.teamleader.data.liveIds("projects_v2").sort());
    sandbox.teamleader.projectsVersion = "legacy";
    const detected = await freshSync().sync.run({ resources: resources("projects"), mode: "full" });
    assert.deepEqual(Object.keys(detected.resources), ["projects"], "a legacy account's projects");
  });

  it("syncs deals, quotations, time tracking, tasks and products whole, their deletions swept, deals and products by delta", async () => {
    const { tables, sync } = freshSync();
    const full = await sync.run({ resources: resources("deals,quotations,timeTracking,tasks,products"), mode: "full" });
    for (const resource of REPORTING) {
      assert.equal(full.resources[resource]?.status, "synced", resource);
      assert.deepEqual(await live(tables, resource), sandbox.teamleader.data.liveIds(resource).sort(), `${resource}: every record once`);
    }
    const changed = { deals: sandbox.teamleader.data.change("deals", 4), products: sandbox.teamleader.data.change("products", 3) };
    const delta = await sync.run({ resources: resources("deals,products"), mode: "delta" });
    assert.equal(delta.resources.deals!.mode, "delta");
    assert.equal(delta.resources.deals!.updated, changed.deals.length);
    assert.ok(delta.resources.deals!.fetched < VOLUMES.deals, "a delta run asks for changes only");
    assert.equal(delta.resources.products!.mode, "delta");
    assert.equal(delta.resources.products!.updated, changed.products.length);

    const removed = Object.fromEntries(REPORTING.map((r) => [r, sandbox.teamleader.data.remove(r, 2)]));
    const sweep = await sync.run({ resources: [...REPORTING], mode: "full" });
    for (const resource of REPORTING) {
      assert.equal(sweep.resources[resource]!.deleted, 2, `${resource}: the deleted records marked`);
      assert.deepEqual(await live(tables, resource), sandbox.teamleader.data.liveIds(resource).sort());
      for (const id of removed[resource]!) assert.ok(!(await live(tables, resource)).includes(id));
    }
  });

  it("leaves a record alone and reports it when the legacy .info answers 400 rather than 404, and the sweep completes", async () => {
    const { tables, sync } = freshSync();
    await sync.run({ resources: resources("projects"), mode: "full", projectsModule: "legacy" });
    sandbox.teamleader.goneInfoStatus = 400;
    const removed = sandbox.teamleader.data.remove("projects", 2);
    const summary = await sync.run({ resources: resources("projects"), mode: "full", projectsModule: "legacy" });
    const projects = summary.resources.projects!;
    assert.equal(projects.status, "synced");
    assert.equal(projects.deleted, 0);
    assert.equal(projects.unresolved, 2);
    assert.match(projects.unresolvedReason ?? "", /400/);
    assert.deepEqual((await live(tables, "projects")).filter((id) => removed.includes(id)).sort(), [...removed].sort(), "left as they were");
    sandbox.teamleader.goneInfoStatus = 404;
    const next = await sync.run({ resources: resources("projects"), mode: "full", projectsModule: "legacy" });
    assert.equal(next.resources.projects!.deleted, 2, "marked once Teamleader says they are gone");
  });
});
