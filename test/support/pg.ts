import { randomBytes } from "node:crypto";
import pg from "pg";

/** The PostgreSQL server the tests use: 127.0.0.1:5432 as `postgres`, unless PG* variables say otherwise. */
export function serverConnection(database = process.env.PGDATABASE ?? "test"): pg.PoolConfig {
  return {
    host: process.env.PGHOST ?? "127.0.0.1",
    port: Number(process.env.PGPORT ?? 5432),
    user: process.env.PGUSER ?? "postgres",
    password: process.env.PGPASSWORD,
    database,
  };
}

export interface TestDatabase {
  name: string;
  connection: pg.PoolConfig;
  url: string;
  drop(): Promise<void>;
}

/** A fresh, empty database for one suite, dropped afterwards. */
export async function createTestDatabase(prefix = "gw_test"): Promise<TestDatabase> {
  const name = `${prefix}_${randomBytes(5).toString("hex")}`;
  const server = serverConnection();
  const admin = new pg.Client(server);
  await admin.connect().catch((err: Error) => {
    // npm test cannot start a server by itself: say which one it needs and how to get it.
    throw new Error(
      `the tests need a PostgreSQL server at ${server.host}:${server.port} (database ${server.database}, user ${server.user}, trust or PGPASSWORD), and it answered: ${err.message}. ` +
        "Start one (bash .ci/run starts the system's, or apt-get install postgresql), or point PGHOST, PGPORT, PGUSER and PGPASSWORD at yours",
      { cause: err },
    );
  });
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const connection = serverConnection(name);
  return {
    name,
    connection,
    url: `postgres://${connection.user}@${connection.host}:${connection.port}/${name}`,
    drop: async () => {
      const client = new pg.Client(serverConnection());
      await client.connect();
      try {
        await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      } finally {
        await client.end();
      }
    },
  };
}
