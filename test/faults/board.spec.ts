import assert from "node:assert/strict";
import pg from "pg";
import { Socket, io } from "socket.io-client";
import { BlobServiceClient } from "@azure/storage-blob";
import { FaultMode } from "./proxy";
import { FaultRig, Neighbour, PROXY_FAULTS, describeFault, hold } from "./harness";

interface Snapshot {
  rows: Array<{ main: string; sub: string; occupants: Array<{ user: string }> }>;
}

const ROWS = [
  { main: "Hôpital Saint-Luc", sub: "VPN main" },
  { main: "Hôpital Saint-Luc", sub: "VPN radiology" },
  { main: "Clinique du Parc", sub: "VPN main" },
  { main: "CHU Liège", sub: "Citrix gateway" },
  { main: 'Zorgnet "Noord", campus 2', sub: "VPN main" },
  { main: "Acme & Sons", sub: "Jump host" },
];

/**
 * The support board (a dashboard's actions over socket.io → connection-board in PostgreSQL →
 * NOTIFY → every dashboard; releases → the weekly audit in Azure Blob) with the database or
 * Azure Blob failing while people take and release connections.
 */
describe("faults: support board", function () {
  this.timeout(180_000);
  let rig: FaultRig;
  let socket: Socket;
  let latest: Snapshot | undefined;
  let turn = 0;
  /** Releases the audit must hold, by row and user. */
  const released = new Map<string, number>();

  function connectDashboard(): void {
    socket?.close();
    latest = undefined;
    socket = io(rig.red.url, { path: "/dashboard/socket.io", forceNew: true });
    socket.on("msg-input:board-ui", (msg: { topic?: string; payload?: Snapshot }) => {
      if (msg.topic === "board" && msg.payload?.rows) latest = msg.payload;
    });
  }

  before(async () => {
    rig = await FaultRig.start({ pipelines: ["board"], database: "server" });
    connectDashboard();
  });
  beforeEach(async () => {
    if (await rig.revive()) connectDashboard();
    await new Promise<void>((resolve) => (socket.connected ? resolve() : socket.once("connect", () => resolve())));
  });
  // A test that failed mid-fault leaves no fault behind for the next.
  afterEach(async function () {
    await rig?.finish(this.currentTest);
    await rig?.healAll();
  });
  after(async () => {
    socket?.close();
    await rig?.stop();
  });

  function act(action: "connect" | "release", row: (typeof ROWS)[number], user: string): void {
    socket.emit("widget-send", "board-ui", { payload: { action, ...row, user } });
  }

  function occupantsShown(row: (typeof ROWS)[number]): string[] | undefined {
    return latest?.rows.find((r) => r.main === row.main && r.sub === row.sub)?.occupants.map((o) => o.user);
  }

  async function occupantsStored(row: (typeof ROWS)[number]): Promise<string[]> {
    const rows = await rig.query<{ user_name: string }>("SELECT user_name FROM gluework_board_occupants WHERE main = $1 AND sub = $2 ORDER BY user_name", [row.main, row.sub]);
    return rows.map((r) => r.user_name);
  }

  /** The audit's lines for a row and user, across the weekly files. */
  async function auditCounts(): Promise<Map<string, number>> {
    const container = BlobServiceClient.fromConnectionString(rig.azurite.connectionString).getContainerClient("support-audit");
    const counts = new Map<string, number>();
    if (!(await container.exists())) return counts;
    for await (const blob of container.listBlobsFlat({ prefix: "audit/" })) {
      const text = (await container.getBlockBlobClient(blob.name).downloadToBuffer()).toString("utf8");
      for (const line of text.split(/\r?\n/).slice(1)) {
        for (const row of ROWS) {
          for (const user of ["Burt", "Bart"]) {
            if (line.includes(row.sub) && line.includes(row.main.replace(/"/g, '""')) && line.split(",").includes(user)) {
              const key = `${row.main}|${row.sub}|${user}`;
              counts.set(key, (counts.get(key) ?? 0) + 1);
            }
          }
        }
      }
    }
    return counts;
  }

  /**
   * Burt connects; during the fault Bart connects and Burt releases; after it, whatever the board
   * did not do is clicked again, as a person would. The database, every dashboard and the audit
   * end exact, and the node's status is back to normal.
   */
  async function takeAndRelease(neighbour: Neighbour, name: string, fault: (during: () => void) => Promise<number>): Promise<void> {
    rig.measure("board", neighbour, name);
    const row = ROWS[turn++ % ROWS.length]!;
    act("connect", row, "Burt");
    await rig.until(() => occupantsShown(row)?.includes("Burt") || undefined, 30_000, "Burt on the board");
    const healed = await fault(() => {
      act("connect", row, "Bart");
      act("release", row, "Burt");
    });
    // Actions refused during the fault are sent again, as a person clicks again: at most one a
    // second, which is what the board takes from one browser once a burst is spent.
    let lastTry = 0;
    await rig.until(async () => {
      const stored = await occupantsStored(row);
      if (stored.join() === "Bart") return true;
      if (Date.now() - lastTry < 1500) return undefined;
      lastTry = Date.now();
      if (!stored.includes("Bart")) act("connect", row, "Bart");
      if (stored.includes("Burt")) act("release", row, "Burt");
      return undefined;
    }, 30_000, "the database to hold Bart alone after the fault");
    released.set(`${row.main}|${row.sub}|Burt`, (released.get(`${row.main}|${row.sub}|Burt`) ?? 0) + 1);
    await rig.until(() => occupantsShown(row)?.join() === "Bart" || undefined, 30_000, "every dashboard to show Bart alone");
    await rig.until((o) => (o.statuses["board-node"]?.fill === "green" && /connected/.test(o.statuses["board-node"]?.text ?? "")) || undefined, 30_000, "the board's status back to normal");
    rig.note(healed, { lost: 0, duplicated: 0 });
    assert.ok(Date.now() - healed < 30_000, `recovered ${(Date.now() - healed) / 1000} s after the fault ended`);
    // The row is left empty for the next test.
    lastTry = 0;
    await rig.until(async () => {
      if ((await occupantsStored(row)).length === 0) return true;
      if (Date.now() - lastTry >= 1500) {
        lastTry = Date.now();
        act("release", row, "Bart");
      }
      return undefined;
    }, 30_000, "Bart's release");
    released.set(`${row.main}|${row.sub}|Bart`, (released.get(`${row.main}|${row.sub}|Bart`) ?? 0) + 1);
    await rig.until(async () => sameCounts(await auditCounts(), released) || undefined, 30_000, `the audit to hold each release once: expected ${JSON.stringify([...released])}`);
  }

  function sameCounts(a: Map<string, number>, b: Map<string, number>): boolean {
    return a.size === b.size && [...b].every(([k, n]) => a.get(k) === n);
  }

  /** Sessions listening for the board's changes on the test database. */
  async function listeners(): Promise<number> {
    const rows = await rig.query<{ n: string }>("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE 'LISTEN%'");
    return Number(rows[0]!.n);
  }

  const proxyFault = (neighbour: Neighbour, mode: FaultMode) => (during: () => void) => rig.faultWindow(neighbour, mode, { during });

  for (const mode of PROXY_FAULTS) {
    it(`keeps Node-RED up and the board exact when PostgreSQL ${describeFault(mode)}`, async () => {
      await takeAndRelease("postgres", mode, proxyFault("postgres", mode));
    });
  }

  it("keeps Node-RED up and the board exact when every database session is terminated, with one LISTEN connection after", async () => {
    await takeAndRelease("postgres", "terminate", (during) => rig.terminateAll(during));
    await rig.until(async () => (await listeners()) === 1 || undefined, 30_000, "one LISTEN connection");
    await rig.terminateBackends();
    await hold(1000);
    await rig.until(async () => (await listeners()) === 1 || undefined, 30_000, "one LISTEN connection after a second termination");
  });

  it("keeps Node-RED up and the board exact across a database restart (refused, every connection reset)", async () => {
    await takeAndRelease("postgres", "restart", (during) => rig.restartDatabase(during));
  });

  it("keeps Node-RED up when the session of a take waiting on a lock is terminated (BEGIN; LOCK TABLE gluework_board_occupants)", async () => {
    rig.measure("board", "postgres", "terminate a take waiting on a lock");
    const row = ROWS[turn++ % ROWS.length]!;
    const locker = new pg.Client(rig.testDb!.connection);
    locker.on("error", () => undefined);
    await locker.connect();
    try {
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE gluework_board_occupants");
      act("connect", row, "Burt");
      const waiting = await rig.until(async () => {
        const rows = await rig.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> $1", [
          (locker as unknown as { processID: number }).processID,
        ]);
        return rows[0]?.pid;
      }, 30_000, "the take's transaction to wait on the lock");
      await rig.query("SELECT pg_terminate_backend($1)", [waiting]);
      await locker.query("ROLLBACK");
    } finally {
      await locker.end().catch(() => undefined);
    }
    const healed = Date.now();
    await rig.assertAlive();
    await rig.until(async () => {
      const stored = await occupantsStored(row);
      if (!stored.includes("Burt")) act("connect", row, "Burt");
      return stored.join() === "Burt" || undefined;
    }, 30_000, "Burt on the board, clicked again");
    await rig.until(() => occupantsShown(row)?.join() === "Burt" || undefined, 30_000, "every dashboard to show Burt");
    rig.note(healed, { lost: 0, duplicated: 0 });
    assert.ok(Date.now() - healed < 30_000);
    act("release", row, "Burt");
    await rig.until(async () => (await occupantsStored(row)).length === 0 || undefined, 30_000, "Burt's release");
    released.set(`${row.main}|${row.sub}|Burt`, (released.get(`${row.main}|${row.sub}|Burt`) ?? 0) + 1);
    await rig.assertAlive();
  });

  for (const mode of PROXY_FAULTS) {
    it(`audits every release once when Azure Blob ${describeFault(mode)}`, async () => {
      await takeAndRelease("azurite", mode, proxyFault("azurite", mode));
    });
  }
});
