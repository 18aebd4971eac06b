import { randomBytes } from "node:crypto";
import pg from "pg";
import type { Socket } from "node:net";
import { CHECK_RESPONSE_MAX_BYTES, CheckFailure, CheckSkipped, ConnectionChecks, hostOf } from "../check-report";
import { DatabaseConfig } from "./database";
import { EmbeddedFault, acquireEmbedded, embeddedServerInfo } from "./embedded";

/** What the embedded server is: where its data lives and what memory it holds. */
export interface EmbeddedServerReport {
  path: string;
  /** Summed over the server's processes, in bytes, when the system tells it. */
  memoryBytes?: number;
  connection: pg.ClientConfig;
}

/**
 * Starts (or joins) the embedded server of `dataDir` and tells what it is. The one place that
 * knows how the embedded server is run, so a new one changes this function only.
 */
export async function embeddedServer(dataDir: string): Promise<EmbeddedServerReport & { release(): Promise<void> }> {
  const handle = await acquireEmbedded(dataDir);
  const info = embeddedServerInfo(dataDir)[0];
  return {
    path: info?.dataDir ?? dataDir,
    memoryBytes: info?.pssBytes ?? info?.rssBytes,
    connection: { host: "127.0.0.1", port: handle.port, user: handle.user, password: handle.password, database: handle.database },
    release: () => handle.release(),
  };
}

/**
 * A test's queries read a few rows: a peer that sends more (another protocol announcing a huge
 * message) is cut off before pg buffers it.
 */
function capReads(socket: Socket, maxBytes: number): void {
  let size = 0;
  socket.on("data", (chunk: Buffer) => {
    size += chunk.length;
    if (size > maxBytes) socket.destroy(Object.assign(new Error(`the server sent more than ${maxBytes} bytes to a connection test`), { code: "EPROTO" }));
  });
}

/** Where a server connection goes, as the user typed it. */
function serverHost(connection: pg.ClientConfig): string {
  if (connection.connectionString) {
    const host = hostOf(connection.connectionString);
    if (host !== connection.connectionString) return host;
  }
  return `${connection.host || "localhost"}:${connection.port || 5432}`;
}

const GRANT_FIX = (user: string) => `let the user create tables: GRANT CREATE ON SCHEMA public TO ${user} (or give the node a user that may)`;

/**
 * The postgres-database node's checks: connect, the rights to create tables, LISTEN/NOTIFY and
 * advisory locks; for the embedded server, start it and say where it is and what it holds.
 */
export async function checkDatabase(config: DatabaseConfig, checks: ConnectionChecks): Promise<void> {
  let connection: pg.ClientConfig;
  let release: (() => Promise<void>) | undefined;
  if (config.kind === "embedded") {
    const starting = embeddedServer(config.dataDir);
    // Each fault of the embedded server names its own cause and fix.
    const started = starting.catch((err: unknown) => {
      throw err instanceof EmbeddedFault ? new CheckFailure(err.reason, err.fix) : err;
    });
    const info = await checks.run("start the embedded server", "look at the Node-RED log for why it could not start; free disk space and memory, then test again", () => started,
      (i) => `running, data in ${i.path}${i.memoryBytes ? `, ${Math.round(i.memoryBytes / 1024 / 1024)} MB of memory` : ""}`,
    );
    if (!info) {
      // Still starting at the deadline: let go of it once it is up, so it stops when nothing else uses it.
      starting.then((late) => late.release(), () => undefined);
      return checks.skipAll(["connect", "create tables", "LISTEN/NOTIFY", "advisory locks"], "the embedded server did not start");
    }
    release = info.release;
    connection = info.connection;
  } else {
    connection = { ...config.connection } as pg.ClientConfig;
  }
  const client = new pg.Client({ ...connection, connectionTimeoutMillis: 8000, query_timeout: 8000 });
  client.on("error", () => undefined); // a server that drops us mid-test fails the running check instead
  const socket = (client as unknown as { connection: { stream: Socket } }).connection.stream;
  capReads(socket, CHECK_RESPONSE_MAX_BYTES);
  if (config.kind === "server") checks.service(serverHost(connection));
  try {
    const who = await checks.run(
      "connect",
      "check the host, port, database name, user and password (or the connection string), and that the server accepts this client (pg_hba.conf)",
      async () => {
        await client.connect();
        const { rows } = await client.query<{ user: string; version: string }>("SELECT current_user AS user, current_setting('server_version') AS version");
        return rows[0]!;
      },
      (r) => `as ${r.user}, PostgreSQL ${r.version}`,
    );
    if (!who) return checks.skipAll(["create tables", "LISTEN/NOTIFY", "advisory locks"], "no connection");
    await checks.run("create tables", GRANT_FIX(who.user), async () => {
      const table = `gluework_probe_${randomBytes(4).toString("hex")}`;
      await client.query("BEGIN");
      try {
        await client.query(`CREATE TABLE ${table} (id integer)`);
      } catch (err) {
        if ((err as { code?: string }).code === "42501") {
          throw new CheckFailure(`the user ${who.user} may not create tables in this database (${(err as Error).message})`, GRANT_FIX(who.user));
        }
        throw err;
      } finally {
        await client.query("ROLLBACK").catch(() => undefined);
      }
      return "a table was created (and rolled back)";
    });
    await checks.run("LISTEN/NOTIFY", "use a direct connection to PostgreSQL: a pooler in transaction mode (PgBouncer) drops LISTEN", async () => {
      const channel = `gluework_probe_${randomBytes(4).toString("hex")}`;
      await client.query(`LISTEN ${channel}`);
      const heard = new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), 3000);
        client.on("notification", (n) => {
          if (n.channel === channel) {
            clearTimeout(timer);
            resolve(true);
          }
        });
      });
      await client.query("SELECT pg_notify($1, 'probe')", [channel]);
      const ok = await heard;
      await client.query(`UNLISTEN ${channel}`);
      if (!ok) throw new CheckFailure("a notification sent on this connection did not come back within 3 s", "use a direct connection to PostgreSQL: a pooler in transaction mode (PgBouncer) drops LISTEN");
      return "a notification went out and came back";
    });
    await checks.run("advisory locks", "use a direct connection to PostgreSQL: a pooler in transaction mode loses session locks", async () => {
      const key = Number.parseInt(randomBytes(3).toString("hex"), 16);
      const { rows } = await client.query<{ locked: boolean }>("SELECT pg_try_advisory_lock($1) AS locked", [key]);
      if (!rows[0]?.locked) throw new CheckSkipped("another session holds the probe's lock; try again");
      await client.query("SELECT pg_advisory_unlock($1)", [key]);
      return "taken and released";
    });
  } finally {
    // pg's goodbye waits for the peer to close; one that never speaks would keep the socket open.
    await Promise.race([client.end().catch(() => undefined), new Promise((resolve) => setTimeout(resolve, 1000).unref())]);
    socket.destroy();
    await release?.();
  }
}
