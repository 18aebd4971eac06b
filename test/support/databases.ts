import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Database } from "../../src/core/db/database";
import { TestDatabase, createTestDatabase } from "./pg";

/**
 * Every database-backed suite runs twice: on the PostgreSQL server at 127.0.0.1:5432 and on the
 * embedded server (a PostgreSQL of its own in a fresh directory, as a Node-RED user directory has).
 */
export type DatabaseKind = "server" | "embedded";

export const DATABASE_KINDS: readonly DatabaseKind[] = ["server", "embedded"];

export function kindLabel(kind: DatabaseKind): string {
  return kind === "server" ? "PostgreSQL server" : "embedded PostgreSQL";
}

/** A database of either kind for one suite: a fresh server database, or an embedded server in a fresh directory. */
export async function openDatabase(kind: DatabaseKind, prefix = "gw_test"): Promise<{ db: Database; drop(): Promise<void>; testDb?: TestDatabase; dataDir?: string }> {
  if (kind === "server") {
    const testDb = await createTestDatabase(prefix);
    const db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
    return { db, testDb, drop: async () => (await db.close(), await testDb.drop()) };
  }
  const dataDir = path.join(mkdtempSync(path.join(os.tmpdir(), "gw-pg-")), "postgres");
  const db = await Database.open({ kind: "embedded", dataDir, keepAliveMs: 0 }, { warn: () => undefined });
  return { db, dataDir, drop: () => db.close() };
}

/** The settings of a postgres-database node of either kind (the server one on `testDb`). */
export function databaseNode(kind: DatabaseKind, testDb: TestDatabase, settings: Record<string, unknown> = {}): Record<string, unknown> {
  return kind === "server"
    ? { type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", ...settings }
    : { type: "postgres-database", mode: "embedded", ...settings };
}
