import type pg from "pg";
import { ConfigError } from "../errors";
import { DatabaseConfig } from "./database";

/** The saved settings of a postgres-database config node. */
export interface PostgresDatabaseDef {
  mode: "embedded" | "server";
  host: string;
  port: string;
  database: string;
  ssl: "disable" | "require" | "verify-full";
  poolSize: string;
  /** How many days runs are kept in gluework_runs (30 when empty). */
  keepRunsDays?: string;
  version?: number;
}

export interface PostgresCredentials {
  user?: string;
  password?: string;
  url?: string;
}

/** Turns the dialog's fields (or a connection string) into a pool configuration. */
export function databaseConfig(def: PostgresDatabaseDef, creds: PostgresCredentials, embeddedDir: string): DatabaseConfig {
  const max = Number(def.poolSize) || 10;
  if (def.mode !== "server") return { kind: "embedded", dataDir: embeddedDir, max };
  const ssl = def.ssl === "require" ? { rejectUnauthorized: false } : def.ssl === "verify-full" ? { rejectUnauthorized: true } : undefined;
  const connection: pg.PoolConfig = creds.url
    ? { connectionString: creds.url, max, ssl }
    : {
        host: def.host || "127.0.0.1",
        port: Number(def.port) || 5432,
        database: def.database || undefined,
        user: creds.user || undefined,
        password: creds.password || undefined,
        max,
        ssl,
      };
  if (!connection.connectionString && !connection.database) throw new ConfigError("the postgres-database node needs a database name or a connection string");
  return { kind: "server", connection: { application_name: "node-red-gluework", ...connection } };
}

