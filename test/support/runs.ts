import pg from "pg";
import type { Sandbox } from "../../src/sandbox";
import { eventually } from "./node-red";
import { TestDatabase, createTestDatabase } from "./pg";

/** What every runs suite sets up for its whole life: `sandbox` listening, a fresh database, and a client on it. */
export function runsSuite(sandbox: Sandbox, prefix: string): { testDb: TestDatabase; admin: pg.Client } {
  const suite = {} as { testDb: TestDatabase; admin: pg.Client };
  before(async () => {
    await sandbox.listen();
    suite.testDb = await createTestDatabase(prefix);
    suite.admin = new pg.Client(suite.testDb.connection);
    await suite.admin.connect();
  });
  after(async () => {
    await suite.admin.end();
    await suite.testDb.drop();
    await sandbox.close();
  });
  return suite;
}

/** A row of gluework_runs as a test compares it: counts as numbers, times as dates. */
export interface RunRow {
  id: string;
  node_id: string;
  node_type: string;
  pipeline: string;
  run_key: string | null;
  instance: string;
  started_at: Date;
  ended_at: Date;
  outcome: string;
  rows: number;
  pages: number;
  requests: number;
  http_429: number;
  retries: number;
  token_refreshes: number;
  error_message: string | null;
  error_code: string | null;
  error_cause: string | null;
  error_fix: string | null;
  details: Record<string, any> | null;
}

/** The runs a node recorded, oldest first. */
export async function runsOf(client: pg.Client | pg.Pool, nodeId: string): Promise<RunRow[]> {
  const { rows } = await client
    .query("SELECT r.*, r.id::text AS id, r.rows::float8 AS rows FROM gluework_runs r WHERE r.node_id = $1 ORDER BY r.started_at, r.id", [nodeId])
    .catch((err: { code?: string }) => (err.code === "42P01" ? { rows: [] } : Promise.reject(err))); // no table yet: no run yet
  return rows as RunRow[];
}

/** Waits until `nodeId` has recorded `count` runs (at least), and returns them. */
export async function waitForRuns(client: pg.Client | pg.Pool, nodeId: string, count: number, timeoutMs = 20_000): Promise<RunRow[]> {
  return eventually(async () => {
    const rows = await runsOf(client, nodeId);
    return rows.length >= count ? rows : undefined;
  }, timeoutMs, `${count} run(s) of ${nodeId} recorded`);
}

/** The counts of a run, in the order the assertions name them. */
export function countsOf(run: RunRow): { rows: number; pages: number; requests: number; http_429: number; retries: number; token_refreshes: number } {
  return { rows: run.rows, pages: run.pages, requests: run.requests, http_429: run.http_429, retries: run.retries, token_refreshes: run.token_refreshes };
}
