import type pg from "pg";
import { Clock, systemClock } from "../core/clock";
import type { Database, Migration } from "../core/db/database";
import { InputError } from "../core/errors";
import { BoardAction, BoardPolicy, Decision, Occupant, decide, describeRefusal, sameUser } from "./policy";
import type { Connection } from "./sources";

export const BOARD_MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description: "connection board",
    sql: `CREATE TABLE IF NOT EXISTS gluework_board_connections (
      board text NOT NULL, main text NOT NULL, sub text NOT NULL, position integer NOT NULL,
      PRIMARY KEY (board, main, sub));
    CREATE TABLE IF NOT EXISTS gluework_board_occupants (
      board text NOT NULL, main text NOT NULL, sub text NOT NULL, user_name text NOT NULL, since timestamptz NOT NULL,
      PRIMARY KEY (board, main, sub, user_name),
      FOREIGN KEY (board, main, sub) REFERENCES gluework_board_connections (board, main, sub) ON DELETE CASCADE);
    CREATE TABLE IF NOT EXISTS gluework_board_users (
      board text NOT NULL, name text NOT NULL, position integer NOT NULL, PRIMARY KEY (board, name));`,
  },
];

/** The channel every board change is announced on (LISTEN/NOTIFY between Node-RED instances). */
export const BOARD_CHANNEL = "gluework_board";

export interface BoardRow extends Connection {
  /** With `sinceText`: when each person connected, as the board shows it (in the board's time zone). */
  occupants: Array<Occupant & { sinceText?: string }>;
}

export interface BoardSnapshot {
  board: string;
  policy: BoardPolicy;
  maxPerRow: number;
  rows: BoardRow[];
  users: string[];
  /** Epoch ms, as the server sees it: the dashboard measures running durations from it. */
  serverTime: number;
}

/** One stretch of someone's connection, written when it ends (a release, a takeover, a removal). */
export interface AuditEvent {
  main: string;
  sub: string;
  user: string;
  connectedAt: number;
  releasedAt: number;
  durationSeconds: number;
  releasedBy: string;
  reason: "released" | "taken over" | "removed from the list";
}

export type ActionOutcome =
  | { ok: true; changed: boolean; audit: AuditEvent[] }
  | { ok: false; code: string; message: string };

export interface BoardOptions {
  board: string;
  policy: BoardPolicy;
  maxPerRow: number;
  /** Shows a moment to people (refusals): a formatter in the board's time zone. */
  formatTime?: (ms: number) => string;
  clock?: Clock;
}

/**
 * The shared connection list: which client connections exist, who is connected to each and
 * since when. The database holds the state, so a restart loses nothing and every Node-RED
 * instance on one PostgreSQL server shows one board; each action runs in a transaction holding
 * its row's lock and is judged there against the board's policy, never against what a browser
 * last saw.
 */
export class ConnectionBoard {
  private ready?: Promise<unknown>;
  private readonly clock: Clock;

  constructor(
    private readonly db: Database,
    readonly options: BoardOptions,
  ) {
    this.clock = options.clock ?? systemClock;
  }

  get key(): string {
    return this.options.board;
  }

  /** Makes the list of connections exactly `connections`; occupants of removed rows are audited. */
  async setConnections(connections: Connection[], by = "the connection list"): Promise<AuditEvent[]> {
    await this.migrated();
    const audit = await this.db.transaction(async (client) => {
      await client.query("SELECT pg_advisory_xact_lock(hashtext($1))", [`gluework-board:${this.key}`]);
      const { rows } = await client.query<{ main: string; sub: string; user_name: string | null; since: Date | null }>(
        `SELECT c.main, c.sub, o.user_name, o.since FROM gluework_board_connections c
         LEFT JOIN gluework_board_occupants o USING (board, main, sub) WHERE c.board = $1`,
        [this.key],
      );
      const wanted = new Set(connections.map(keyOf));
      const now = this.clock.now();
      const removed = rows.filter((r) => !wanted.has(keyOf(r)));
      const events: AuditEvent[] = removed
        .filter((r) => r.user_name)
        .map((r) => auditEvent(r, r.user_name!, r.since!.getTime(), now, by, "removed from the list"));
      for (const r of unique(removed)) await client.query("DELETE FROM gluework_board_connections WHERE board = $1 AND main = $2 AND sub = $3", [this.key, r.main, r.sub]);
      for (const [position, c] of connections.entries()) {
        await client.query(
          `INSERT INTO gluework_board_connections (board, main, sub, position) VALUES ($1, $2, $3, $4)
           ON CONFLICT (board, main, sub) DO UPDATE SET position = EXCLUDED.position`,
          [this.key, c.main, c.sub, position],
        );
      }
      return events;
    });
    await this.announce();
    return audit;
  }

  async setUsers(users: string[]): Promise<void> {
    await this.migrated();
    await this.db.transaction(async (client) => {
      await client.query("DELETE FROM gluework_board_users WHERE board = $1", [this.key]);
      for (const [position, name] of users.entries()) {
        await client.query("INSERT INTO gluework_board_users (board, name, position) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING", [this.key, name, position]);
      }
    });
    await this.announce();
  }

  async snapshot(): Promise<BoardSnapshot> {
    await this.migrated();
    const [connections, users] = await Promise.all([
      this.db.query<{ main: string; sub: string; user_name: string | null; since: Date | null }>(
        `SELECT c.main, c.sub, o.user_name, o.since FROM gluework_board_connections c
         LEFT JOIN gluework_board_occupants o USING (board, main, sub)
         WHERE c.board = $1 ORDER BY c.position, o.since`,
        [this.key],
      ),
      this.db.query<{ name: string }>("SELECT name FROM gluework_board_users WHERE board = $1 ORDER BY position", [this.key]),
    ]);
    const rows: BoardRow[] = [];
    for (const r of connections.rows) {
      let row = rows.at(-1);
      if (!row || row.main !== r.main || row.sub !== r.sub) rows.push((row = { main: r.main, sub: r.sub, occupants: [] }));
      if (r.user_name) row.occupants.push({ user: r.user_name, since: r.since!.getTime(), sinceText: (this.options.formatTime ?? isoMinute)(r.since!.getTime()) });
    }
    const { board, policy, maxPerRow } = this.options;
    return { board, policy, maxPerRow, rows, users: users.rows.map((u) => u.name), serverTime: this.clock.now() };
  }

  /** One person's action on one row, judged in a transaction that holds the row's lock. */
  async act(row: Connection, request: BoardAction): Promise<ActionOutcome> {
    await this.migrated();
    const user = request.user?.trim();
    if (!user) throw new InputError("choose who you are before connecting");
    const outcome = await this.db.transaction(async (client): Promise<ActionOutcome> => {
      const known = await client.query("SELECT 1 FROM gluework_board_users WHERE board = $1 AND name = $2", [this.key, user]);
      if (known.rowCount === 0) return { ok: false, code: "unknown-user", message: `${user} is not one of this board's users` };
      const locked = await client.query("SELECT 1 FROM gluework_board_connections WHERE board = $1 AND main = $2 AND sub = $3 FOR UPDATE", [this.key, row.main, row.sub]);
      if (locked.rowCount === 0) return { ok: false, code: "unknown-row", message: `${row.main} / ${row.sub} is not on this board` };
      const occupants = await this.occupants(client, row);
      const decision = decide(this.options.policy, this.options.maxPerRow, occupants, { action: request.action, user });
      return this.apply(client, row, decision, user);
    });
    if (outcome.ok && outcome.changed) await this.announce();
    return outcome;
  }

  /**
   * Calls `onChange` whenever any instance changes this board, and after the notification
   * connection comes back (a change made meanwhile was not heard); returns the function that stops it.
   */
  subscribe(onChange: () => void): Promise<() => void> {
    return this.db.subscribe(
      BOARD_CHANNEL,
      (payload) => {
        if (payload === this.key) onChange();
      },
      onChange,
    );
  }

  private async apply(client: pg.PoolClient, row: Connection, decision: Decision, user: string): Promise<ActionOutcome> {
    const now = this.clock.now();
    switch (decision.kind) {
      case "nothing":
        return { ok: true, changed: false, audit: [] };
      case "refuse":
        return { ok: false, code: decision.code, message: describeRefusal(decision, user, this.options.formatTime ?? isoMinute) };
      case "add":
        await this.insertOccupant(client, row, user, now);
        return { ok: true, changed: true, audit: [] };
      case "remove":
        await client.query("DELETE FROM gluework_board_occupants WHERE board = $1 AND main = $2 AND sub = $3 AND user_name = $4", [this.key, row.main, row.sub, decision.occupant.user]);
        return { ok: true, changed: true, audit: [auditEvent(row, decision.occupant.user, decision.occupant.since, now, user, "released")] };
      case "replace": {
        const audit = decision.displaced.map((o) => auditEvent(row, o.user, o.since, now, user, "taken over"));
        await client.query("DELETE FROM gluework_board_occupants WHERE board = $1 AND main = $2 AND sub = $3 AND user_name <> $4", [this.key, row.main, row.sub, user]);
        const stays = (await this.occupants(client, row)).some((o) => sameUser(o.user, user));
        if (!stays) await this.insertOccupant(client, row, user, now);
        return { ok: true, changed: true, audit };
      }
    }
  }

  private async occupants(client: pg.PoolClient, row: Connection): Promise<Occupant[]> {
    const { rows } = await client.query<{ user_name: string; since: Date }>(
      "SELECT user_name, since FROM gluework_board_occupants WHERE board = $1 AND main = $2 AND sub = $3 ORDER BY since",
      [this.key, row.main, row.sub],
    );
    return rows.map((r) => ({ user: r.user_name, since: r.since.getTime() }));
  }

  private async insertOccupant(client: pg.PoolClient, row: Connection, user: string, now: number): Promise<void> {
    await client.query("INSERT INTO gluework_board_occupants (board, main, sub, user_name, since) VALUES ($1, $2, $3, $4, $5)", [this.key, row.main, row.sub, user, new Date(now)]);
  }

  private announce(): Promise<void> {
    return this.db.notify(BOARD_CHANNEL, this.key);
  }

  private migrated(): Promise<unknown> {
    this.ready ??= this.db.migrate("connection-board", BOARD_MIGRATIONS).catch((err) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }
}

function auditEvent(row: Connection, user: string, connectedAt: number, releasedAt: number, releasedBy: string, reason: AuditEvent["reason"]): AuditEvent {
  return { main: row.main, sub: row.sub, user, connectedAt, releasedAt, durationSeconds: Math.max(0, Math.round((releasedAt - connectedAt) / 1000)), releasedBy, reason };
}

function keyOf(c: Connection): string {
  return `${c.main}\u0000${c.sub}`;
}

function unique<T extends Connection>(rows: T[]): Connection[] {
  const seen = new Map<string, Connection>();
  for (const r of rows) seen.set(keyOf(r), { main: r.main, sub: r.sub });
  return [...seen.values()];
}

function isoMinute(ms: number): string {
  return `${new Date(ms).toISOString().slice(11, 16)} UTC`;
}
