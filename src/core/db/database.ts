import { EventEmitter } from "node:events";
import pg from "pg";
import { PipelineError, errorMessage } from "../errors";
import { redact } from "../redact";
import { EmbeddedHandle, acquireEmbedded } from "./embedded";

export type DatabaseConfig =
  | { kind: "server"; connection: pg.PoolConfig }
  | { kind: "embedded"; dataDir: string; keepAliveMs?: number; max?: number; binDir?: string; port?: number };

export interface Migration {
  /** Increasing whole numbers per component; never reuse or edit an applied one. */
  id: number;
  description: string;
  sql: string;
}

export interface DatabaseLog {
  warn(message: string): void;
  debug?(message: string): void;
}

const MIGRATION_LOCK = 7_260_601_001; // any constant: one advisory lock for every component's migrations

/**
 * One PostgreSQL pool and what every pipeline needs from it: queries, transactions, idempotent
 * migrations and notifications. The same code path serves a PostgreSQL server and the embedded
 * default, which is a PostgreSQL server too (see embedded.ts): only where the pool connects differs.
 */
export class Database {
  private listenClient?: pg.Client;
  /** The one reconnect of the notification connection under way, whatever number of errors started it. */
  private relistening?: Promise<void>;
  private readonly channels = new Map<string, EventEmitter>();
  private closed = false;
  // pg-pool never settles a connect() still waiting when end() is called: closing rejects them.
  private readonly closing: Promise<never>;
  private signalClosed!: (err: Error) => void;

  private constructor(
    readonly kind: "server" | "embedded",
    readonly pool: pg.Pool,
    private readonly log: DatabaseLog,
    private readonly connection: pg.PoolConfig,
    private readonly embedded?: EmbeddedHandle,
  ) {
    // An idle client that loses its server emits 'error' on the pool; unheard, it ends the process.
    pool.on("error", (err) => this.connectionLost(err));
    // pg-pool takes its own listener off a client while it is checked out (and after the first
    // error of an idle one), yet pg may raise 'error' then too, even twice for one lost
    // connection: every client keeps a listener of ours for its whole life. The query or
    // transaction it was running fails by itself and reports the fault.
    pool.on("connect", (client) => client.on("error", (err) => this.log.debug?.(`a database connection ended: ${errorMessage(err)}`)));
    this.closing = new Promise<never>((_resolve, reject) => (this.signalClosed = reject));
    this.closing.catch(() => undefined);
  }

  static async open(config: DatabaseConfig, log: DatabaseLog): Promise<Database> {
    if (config.kind === "server") return Database.connectTo("server", config.connection, log);
    const handle = await acquireEmbedded(config.dataDir, { keepAliveMs: config.keepAliveMs, log, binDir: config.binDir, port: config.port });
    // A server that had to come back on another port (its own was taken meanwhile) is followed:
    // each new connection asks the handle where it listens now.
    const FollowingClient = class extends pg.Client {
      constructor(config?: pg.ClientConfig) {
        // pg-pool keeps the password out of enumeration, so it is named here.
        super({ ...config, password: config?.password, port: handle.port });
      }
    };
    const connection: pg.PoolConfig = {
      Client: FollowingClient as unknown as pg.PoolConfig["Client"],
      host: "127.0.0.1",
      port: handle.port,
      user: handle.user,
      password: handle.password,
      database: handle.database,
      application_name: "node-red-gluework",
      max: config.max ?? 10,
    };
    return Database.connectTo("embedded", connection, log, handle);
  }

  private static async connectTo(kind: "server" | "embedded", connection: pg.PoolConfig, log: DatabaseLog, embedded?: EmbeddedHandle): Promise<Database> {
    const pool = new pg.Pool({ max: 10, idleTimeoutMillis: 30_000, connectionTimeoutMillis: 10_000, ...connection });
    const db = new Database(kind, pool, log, connection, embedded);
    try {
      await db.ping();
    } catch (err) {
      await db.close();
      throw err;
    }
    return db;
  }

  async query<R extends pg.QueryResultRow = any>(text: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
    const client = await this.connect();
    let failure: Error | undefined;
    try {
      const result = await client.query<R>(text, params as any[]);
      if (this.lostSince !== undefined) this.connectionBack();
      return result;
    } catch (err) {
      failure = err as Error;
      if (isConnectionLost(err)) this.connectionLost(err);
      throw databaseError(err);
    } finally {
      // As pg's own pool.query does: a client that failed a query is not reused.
      client.release(failure);
    }
  }

  /** Runs `work` in one transaction on one connection; any throw rolls it back. */
  async transaction<T>(work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.connect();
    let broken: Error | undefined;
    try {
      await client.query("BEGIN");
      const result = await work(client);
      await client.query("COMMIT");
      if (this.lostSince !== undefined) this.connectionBack();
      return result;
    } catch (err) {
      // A connection that cannot even roll back is gone or unusable: it does not go back to the pool.
      await client.query("ROLLBACK").catch((rollbackFailure: Error) => (broken = rollbackFailure));
      if (broken && isConnectionLost(broken)) this.connectionLost(err);
      throw err instanceof PipelineError ? err : databaseError(err);
    } finally {
      client.release(broken);
    }
  }

  /** A client of the pool; rejects, rather than waits forever, once the database is closed. */
  async connect(): Promise<pg.PoolClient> {
    try {
      return await this.checkout();
    } catch (err) {
      // The embedded server is ours to bring back: one that stopped and was given up on (or an
      // adopted one that died) starts again here, and the pool follows it to its port.
      if (!this.embedded || this.closed || !isConnectionLost(err)) throw err;
      await Promise.race([this.embedded.revive(), this.closing]).catch((revival) => {
        throw databaseError(revival);
      });
      return this.checkout();
    }
  }

  /**
   * One line in the log per fault, however many connections it ends (a restart ends them all),
   * and one when the database answers again.
   */
  private connectionLost(err: unknown): void {
    this.lostCount++;
    if (this.lostSince !== undefined || this.closed) return;
    this.lostSince = Date.now();
    this.log.warn(`database connection lost: ${errorMessage(err)}; reconnecting`);
  }

  private connectionBack(): void {
    if (this.lostSince === undefined) return;
    const seconds = Math.round((Date.now() - this.lostSince) / 100) / 10;
    this.log.warn(`the database answers again after ${seconds} s (${this.lostCount} connection${this.lostCount === 1 ? "" : "s"} lost)`);
    this.lostSince = undefined;
    this.lostCount = 0;
  }

  private lostSince?: number;
  private lostCount = 0;

  private async checkout(): Promise<pg.PoolClient> {
    if (this.closed) throw closedError();
    const pending = this.pool.connect();
    try {
      return await Promise.race([pending, this.closing]);
    } catch (err) {
      // Should the pool hand a client over after all, it goes straight back.
      pending.then((client) => client.release(), () => undefined);
      throw databaseError(err);
    }
  }

  /**
   * Applies a component's missing migrations in order, in one transaction under an advisory lock,
   * so that two processes starting together apply each migration exactly once.
   */
  async migrate(component: string, migrations: readonly Migration[]): Promise<number[]> {
    const sorted = [...migrations].sort((a, b) => a.id - b.id);
    return this.transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock($1)", [MIGRATION_LOCK]);
      await client.query(`CREATE TABLE IF NOT EXISTS gluework_migrations (
        component text NOT NULL,
        id integer NOT NULL,
        description text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (component, id))`);
      const { rows } = await client.query<{ id: number }>("SELECT id FROM gluework_migrations WHERE component = $1", [component]);
      const applied = new Set(rows.map((r) => r.id));
      const ran: number[] = [];
      for (const m of sorted) {
        if (applied.has(m.id)) continue;
        try {
          await client.query(m.sql);
        } catch (err) {
          throw new PipelineError(`migration ${component} #${m.id} (${m.description}) failed: ${errorMessage(err)}`, { cause: err, code: "GW_DB_MIGRATION" });
        }
        await client.query("INSERT INTO gluework_migrations (component, id, description) VALUES ($1, $2, $3)", [component, m.id, m.description]);
        ran.push(m.id);
      }
      return ran;
    });
  }

  /** Sends `payload` to every subscriber of `channel`, in this process and in others on the same database. */
  async notify(channel: string, payload: string): Promise<void> {
    await this.query("SELECT pg_notify($1, $2)", [channel, payload]);
  }

  /**
   * Calls `handler` for every notification on `channel`; returns a function that stops it.
   * Notifications sent while the listening connection was lost are gone: `onReconnect` is called
   * once it listens again, so the subscriber can re-read what it follows.
   */
  async subscribe(channel: string, handler: (payload: string) => void, onReconnect?: () => void): Promise<() => void> {
    let emitter = this.channels.get(channel);
    if (!emitter) {
      emitter = new EventEmitter();
      this.channels.set(channel, emitter);
      try {
        await this.listen(channel);
      } catch (err) {
        this.channels.delete(channel);
        throw err;
      }
    }
    const safe = (payload: string) => {
      try {
        handler(payload);
      } catch (err) {
        this.log.warn(`a notification handler on ${channel} failed: ${errorMessage(err)}`);
      }
    };
    emitter.on("message", safe);
    const reconnected = () => {
      try {
        onReconnect?.();
      } catch (err) {
        this.log.warn(`a reconnect handler on ${channel} failed: ${errorMessage(err)}`);
      }
    };
    if (onReconnect) emitter.on("reconnect", reconnected);
    return () => {
      emitter!.off("message", safe);
      emitter!.off("reconnect", reconnected);
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.signalClosed(closedError());
    const listener = this.listenClient;
    this.listenClient = undefined;
    await listener?.end().catch(() => undefined);
    await this.pool.end().catch(() => undefined);
    await this.embedded?.release();
  }

  private async ping(): Promise<void> {
    await this.query("SELECT 1");
  }

  private async listen(channel: string): Promise<void> {
    // A reconnect under way listens to every channel it knows; this one may have come too late for it.
    if (this.relistening) await this.relistening;
    const client = await this.listener();
    await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
  }

  /**
   * The one notification connection. It is stored before it connects, so that callers meeting
   * while it connects share it, and each client reports its loss once: pg raises 'error' more
   * than once for one lost connection, and each used to start a reconnect of its own.
   */
  private listener(): Promise<pg.Client> {
    if (this.closed) return Promise.reject(closedError());
    if (this.listenClient) return this.listenConnected!;
    const client = new pg.Client(this.connectionConfig());
    this.listenClient = client;
    let connected = false;
    let lost = false;
    client.on("notification", (n) => this.channels.get(n.channel)?.emit("message", n.payload ?? ""));
    const onLost = (err?: Error) => {
      if (lost || !connected) return; // a failed connect is the caller's to report
      lost = true;
      if (this.listenClient === client) {
        this.listenClient = undefined;
        this.listenConnected = undefined;
      }
      void client.end().catch(() => undefined);
      if (this.closed) return;
      this.connectionLost(err ?? new Error("the notification connection was closed by the server"));
      void this.relisten();
    };
    client.on("error", onLost);
    client.on("end", () => onLost());
    this.listenConnected = client.connect().then(
      () => {
        if (this.closed) {
          void client.end().catch(() => undefined);
          throw closedError();
        }
        connected = true;
        return client;
      },
      (err: Error) => {
        if (this.listenClient === client) {
          this.listenClient = undefined;
          this.listenConnected = undefined;
        }
        void client.end().catch(() => undefined);
        throw databaseError(err);
      },
    );
    return this.listenConnected;
  }
  private listenConnected?: Promise<pg.Client>;

  /** Listens again on every channel, once however many losses asked for it, and tells the subscribers. */
  private relisten(): Promise<void> {
    this.relistening ??= (async () => {
      try {
        for (let attempt = 0; !this.closed; attempt++) {
          try {
            const client = await this.listener();
            for (const channel of this.channels.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
            if (this.listenClient !== client) continue; // lost again meanwhile
            this.connectionBack();
            for (const emitter of this.channels.values()) emitter.emit("reconnect");
            return;
          } catch (err) {
            this.log.debug?.(`listen reconnect failed: ${errorMessage(err)}`);
            await pause(Math.min(10_000, 250 * 2 ** attempt));
          }
        }
      } finally {
        this.relistening = undefined;
      }
    })();
    return this.relistening;
  }

  /** Where a new connection goes: for the embedded server, wherever it listens now. */
  private connectionConfig(): pg.ClientConfig {
    return this.embedded ? { ...this.connection, port: this.embedded.port } : this.connection;
  }
}

/** A pause that never keeps the process alive on its own. */
function pause(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms).unref());
}

/** Whether a connect failed because nothing answered where the server was (refused, reset, ended). */
function isConnectionLost(err: unknown): boolean {
  const cause = (err as { cause?: { code?: unknown; message?: unknown } })?.cause ?? err;
  const code = (cause as { code?: unknown })?.code;
  // 57P01–57P03: the server shut the session down (an admin, a restart, a crash) or is starting.
  if (code === "ECONNREFUSED" || code === "ECONNRESET" || code === "EPIPE" || code === "57P01" || code === "57P02" || code === "57P03") return true;
  return /terminat|ended unexpectedly|ECONNREFUSED|Connection terminated/i.test(String((cause as { message?: unknown })?.message ?? ""));
}

function closedError(): PipelineError {
  return new PipelineError("the database connection was closed (the postgres-database node was redeployed or stopped)", { code: "GW_DB_CLOSED", status: "database closed" });
}

/** A database failure as a user reads it, with PostgreSQL's own code kept. */
export function databaseError(err: unknown): PipelineError {
  if (err instanceof PipelineError) return err;
  const e = err as { message?: string; code?: string };
  const code = typeof e?.code === "string" ? e.code : undefined;
  if (code === "53100" || /No space left on device/i.test(e?.message ?? "")) {
    // disk_full: PostgreSQL could not write, and rolled the statement back.
    return new PipelineError(redact(`database error: the database's disk is full (${e?.message ?? String(err)}); nothing of this statement was written`), {
      cause: err,
      code: "GW_DB_DISK_FULL",
      status: "database disk full",
    });
  }
  const unreachable = isConnectionLost(err) || code === "ENOTFOUND" || code === "ETIMEDOUT" || /timeout/i.test(e?.message ?? "");
  return new PipelineError(redact(`database ${unreachable ? "unreachable" : "error"}: ${e?.message ?? String(err)}`), {
    cause: err,
    code: code ? `GW_DB_${code}` : "GW_DB",
    status: unreachable ? "database unreachable" : "database error",
  });
}
