import type { Database, Migration } from "../core/db/database";
import type { PayloadKind } from "./compose";

export const OUTBOX_MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description: "mail outbox",
    sql: `CREATE TABLE gluework_mail_outbox (
      id text PRIMARY KEY,
      queue text NOT NULL,
      message_id text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      recipients jsonb NOT NULL,
      subject text NOT NULL,
      body text NOT NULL,
      kind text NOT NULL,
      state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending', 'failed')),
      attempts integer NOT NULL DEFAULT 0,
      next_attempt_at timestamptz NOT NULL DEFAULT now(),
      lease_until timestamptz,
      last_error text
    );
    CREATE INDEX gluework_mail_outbox_due ON gluework_mail_outbox (queue, state, next_attempt_at);`,
  },
  { id: 2, description: "HTML part of a mail", sql: `ALTER TABLE gluework_mail_outbox ADD COLUMN IF NOT EXISTS html text` },
  // The metrics read each queue's oldest waiting mail by this index, in bounded time.
  { id: 3, description: "oldest mail per queue and state", sql: `CREATE INDEX IF NOT EXISTS gluework_mail_outbox_age ON gluework_mail_outbox (queue, state, created_at)` },
];

/** A mail as it waits in the outbox. */
export interface OutboxMail {
  id: string;
  messageId: string;
  createdAt: Date;
  to: string[];
  subject: string;
  text: string;
  /** The HTML part, beside the text (alerts have one). */
  html?: string;
  kind: PayloadKind;
  attempts: number;
  lastError?: string;
}

export type NewMail = Pick<OutboxMail, "id" | "messageId" | "createdAt" | "to" | "subject" | "text" | "html" | "kind"> & {
  /** Stored already leased to the caller, who sends it at once (no claim needed). */
  leased?: boolean;
};

export interface OutboxCounts {
  /** Waiting or being sent. */
  queued: number;
  failed: number;
}

interface Row {
  id: string;
  message_id: string;
  created_at: Date;
  recipients: string[];
  subject: string;
  body: string;
  html: string | null;
  kind: PayloadKind;
  attempts: number;
  last_error: string | null;
}

/**
 * The durable queue of one relay in the platform database. A mail is written before the sender
 * is answered and deleted only once the SMTP server has taken it. Mails are claimed with a lease
 * (FOR UPDATE SKIP LOCKED), so several Node-RED instances on one database never send one twice.
 * The lease is short and renewed while the mail is with the SMTP server, so a mail claimed by an
 * instance that died is taken up again within seconds; only such a mail can be sent twice.
 * Writes that arrive together go to the database together (new mails and sent ones in one statement).
 * A mail the relay can send at once is stored already leased to it, so it needs no claim.
 */
export class Outbox {
  private readonly writes = new WriteQueue((mails, ids) => this.write(mails, ids));

  constructor(
    private readonly db: Database,
    readonly queue: string,
    /** Short: the relay renews the lease of each mail it holds, so a dead instance's mails move on soon. */
    readonly leaseMs = 10_000,
  ) {}

  async migrate(): Promise<void> {
    await this.db.migrate("mail-outbox", OUTBOX_MIGRATIONS);
  }

  /** Resolves once the mail is stored. */
  add(mail: NewMail): Promise<void> {
    return this.writes.add(mail);
  }

  /** Up to `limit` mails that are due, now leased to the caller. */
  async claim(limit: number): Promise<OutboxMail[]> {
    const { rows } = await this.db.query<Row>(
      `UPDATE gluework_mail_outbox SET state = 'sending', lease_until = now() + $3 * interval '1 millisecond'
       WHERE id IN (
         SELECT id FROM gluework_mail_outbox
         WHERE queue = $1 AND ((state = 'pending' AND next_attempt_at <= now()) OR (state = 'sending' AND lease_until < now()))
         ORDER BY next_attempt_at, created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
       RETURNING id, message_id, created_at, recipients, subject, body, html, kind, attempts, last_error`,
      [this.queue, limit, this.leaseMs],
    );
    return rows.sort((a, b) => a.created_at.getTime() - b.created_at.getTime()).map(toMail);
  }

  /**
   * The SMTP server took it: it leaves the outbox. With `more` (other mails are being sent), the
   * row may wait a moment to leave with theirs.
   */
  sent(id: string, more = false): Promise<void> {
    return this.writes.remove(id, more);
  }

  /** Keeps the leases of mails still with the SMTP server from running out. */
  async renew(ids: string[]): Promise<void> {
    if (!ids.length) return;
    await this.db.query(`UPDATE gluework_mail_outbox SET lease_until = now() + $2 * interval '1 millisecond' WHERE id = ANY($1) AND state = 'sending'`, [ids, this.leaseMs]);
  }

  /** Back to the queue without counting an attempt (the server, not the mail, was the problem). */
  async release(ids: string[]): Promise<void> {
    if (!ids.length) return;
    await this.db.query(`UPDATE gluework_mail_outbox SET state = 'pending', lease_until = NULL WHERE id = ANY($1) AND state = 'sending'`, [ids]);
  }

  /** One more failed attempt; the mail is tried again after `delayMs`. */
  async retryLater(id: string, delayMs: number, error: string): Promise<void> {
    await this.db.query(
      `UPDATE gluework_mail_outbox SET state = 'pending', lease_until = NULL, attempts = attempts + 1, last_error = $3,
         next_attempt_at = now() + $2 * interval '1 millisecond' WHERE id = $1`,
      [id, Math.round(delayMs), error],
    );
  }

  /** Given up: it stays, marked failed, until someone deletes or retries it. */
  async fail(id: string, error: string): Promise<void> {
    await this.db.query(`UPDATE gluework_mail_outbox SET state = 'failed', lease_until = NULL, attempts = attempts + 1, last_error = $2 WHERE id = $1`, [id, error]);
  }

  async counts(): Promise<OutboxCounts> {
    const { rows } = await this.db.query<{ state: string; n: number }>(`SELECT state, count(*)::int AS n FROM gluework_mail_outbox WHERE queue = $1 GROUP BY state`, [this.queue]);
    const n = (state: string) => rows.find((r) => r.state === state)?.n ?? 0;
    return { queued: n("pending") + n("sending"), failed: n("failed") };
  }

  /** Milliseconds until the next mail is due (a retry, or a lease that runs out); undefined when none waits. */
  async nextDueInMs(): Promise<number | undefined> {
    const { rows } = await this.db.query<{ wait: number | null }>(
      `SELECT extract(epoch FROM (min(CASE WHEN state = 'pending' THEN next_attempt_at ELSE lease_until END) - now())) * 1000 AS wait
       FROM gluework_mail_outbox WHERE queue = $1 AND state IN ('pending', 'sending')`,
      [this.queue],
    );
    const wait = rows[0]?.wait;
    return wait === null || wait === undefined ? undefined : Math.max(0, Number(wait));
  }

  async failed(): Promise<OutboxMail[]> {
    const { rows } = await this.db.query<Row>(
      `SELECT id, message_id, created_at, recipients, subject, body, html, kind, attempts, last_error FROM gluework_mail_outbox
       WHERE queue = $1 AND state = 'failed' ORDER BY created_at`,
      [this.queue],
    );
    return rows.map(toMail);
  }

  /** Deletes failed mails: those of `ids`, or all when `ids` is absent. Returns the ids deleted. */
  async deleteFailed(ids?: string[]): Promise<string[]> {
    const { rows } = await this.db.query<{ id: string }>(
      `DELETE FROM gluework_mail_outbox WHERE queue = $1 AND state = 'failed' AND ($2::text[] IS NULL OR id = ANY($2)) RETURNING id`,
      [this.queue, ids ?? null],
    );
    return rows.map((r) => r.id);
  }

  /** Puts failed mails back in the queue with a fresh count of attempts. Returns the ids. */
  async retryFailed(ids?: string[]): Promise<string[]> {
    const { rows } = await this.db.query<{ id: string }>(
      `UPDATE gluework_mail_outbox SET state = 'pending', attempts = 0, next_attempt_at = now()
       WHERE queue = $1 AND state = 'failed' AND ($2::text[] IS NULL OR id = ANY($2)) RETURNING id`,
      [this.queue, ids ?? null],
    );
    return rows.map((r) => r.id);
  }

  /** Writes what waits at once, and waits for writes already handed over. */
  async flush(): Promise<void> {
    this.writes.hurry();
    await this.writes.idle();
  }

  /** Stops lingering: the relay is closing, so every write goes at once. */
  hurry(): void {
    this.writes.hurry();
  }

  /** New mails in, sent mails out: one statement, so one round trip, for both. */
  private async write(mails: NewMail[], sent: string[]): Promise<void> {
    if (!mails.length) {
      await this.db.query(`DELETE FROM gluework_mail_outbox WHERE id = ANY($1)`, [sent]);
      return;
    }
    const records = mails.map((m) => ({
      id: m.id,
      message_id: m.messageId,
      created_at: m.createdAt.toISOString(),
      recipients: m.to,
      subject: m.subject,
      body: m.text,
      html: m.html ?? null,
      kind: m.kind,
      leased: !!m.leased,
    }));
    await this.db.query(
      `WITH sent AS (DELETE FROM gluework_mail_outbox WHERE id = ANY($4::text[]))
       INSERT INTO gluework_mail_outbox (id, queue, message_id, created_at, recipients, subject, body, html, kind, state, lease_until)
       SELECT id, $1, message_id, created_at, recipients, subject, body, html, kind,
         CASE WHEN leased THEN 'sending' ELSE 'pending' END,
         CASE WHEN leased THEN now() + $3 * interval '1 millisecond' END
       FROM jsonb_to_recordset($2::jsonb) AS m(id text, message_id text, created_at timestamptz, recipients jsonb, subject text, body text, html text, kind text, leased boolean)`,
      [this.queue, JSON.stringify(records), this.leaseMs, sent],
    );
  }
}

/**
 * Stores `mail` in `queue` through `client`, inside the caller's transaction: a mail decided
 * together with other rows (an alert and its claim) is queued if and only if they are. The relay
 * of that queue sends it as any other (`MailRelay.stored` tells it to look at once).
 */
export async function enqueueIn(client: { query(text: string, params: unknown[]): Promise<unknown> }, queue: string, mail: Omit<NewMail, "leased">): Promise<void> {
  await client.query(
    `INSERT INTO gluework_mail_outbox (id, queue, message_id, created_at, recipients, subject, body, html, kind)
     VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9)`,
    [mail.id, queue, mail.messageId, mail.createdAt, JSON.stringify(mail.to), mail.subject, mail.text, mail.html ?? null, mail.kind],
  );
}

function toMail(row: Row): OutboxMail {
  return {
    id: row.id,
    messageId: row.message_id,
    createdAt: row.created_at,
    to: row.recipients,
    subject: row.subject,
    text: row.body,
    html: row.html ?? undefined,
    kind: row.kind,
    attempts: row.attempts,
    lastError: row.last_error ?? undefined,
  };
}

/**
 * Group commit: writes that arrive while one is under way go together in the next, so a burst
 * costs a few round trips instead of one per mail. A new mail is written at once (its sender waits
 * for the answer); a sent mail's removal waits up to `lingerMs` for company, or rides along with
 * the next new mails. Until it is gone only a crash could send that mail again, with the same
 * Message-ID. Each call resolves when its write has.
 */
class WriteQueue {
  private adds: Array<Waiter<NewMail>> = [];
  private removals: Array<Waiter<string> & { at: number }> = [];
  private running?: Promise<void>;
  private kick?: () => void;
  private hurried = false;
  /** A removal waits that is not to linger. */
  private urgent = false;

  constructor(
    private readonly write: (mails: NewMail[], sent: string[]) => Promise<void>,
    private readonly maxAdds = 500,
    private readonly maxRemovals = 1000,
    private readonly lingerMs = 25,
  ) {}

  add(mail: NewMail): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.adds.push({ item: mail, resolve, reject });
      this.kick?.();
      this.running ??= this.drain();
    });
  }

  remove(id: string, linger: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.removals.push({ item: id, resolve, reject, at: Date.now() });
      if (!linger) {
        this.urgent = true;
        this.kick?.();
      }
      this.running ??= this.drain();
    });
  }

  /** From now on nothing waits (the relay is closing). */
  hurry(): void {
    this.hurried = true;
    this.kick?.();
  }

  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    while (this.adds.length || this.removals.length) {
      if (this.adds.length) {
        await new Promise<void>((r) => setImmediate(r)); // let the rest of this burst arrive
      } else {
        const wait = this.urgent || this.hurried ? 0 : this.lingerMs - (Date.now() - this.removals[0]!.at);
        if (wait > 0) {
          await new Promise<void>((resolve) => {
            const timer = setTimeout(go, wait);
            function go() {
              clearTimeout(timer);
              resolve();
            }
            this.kick = go;
          });
          this.kick = undefined;
        }
      }
      const adds = this.adds.splice(0, this.maxAdds);
      const removals = this.removals.splice(0, this.maxRemovals);
      this.urgent = false;
      const batch = [...adds, ...removals];
      try {
        await this.write(
          adds.map((a) => a.item),
          removals.map((r) => r.item),
        );
        for (const b of batch) b.resolve();
      } catch (err) {
        for (const b of batch) b.reject(err);
      }
    }
    this.running = undefined;
  }
}

interface Waiter<T> {
  item: T;
  resolve: () => void;
  reject: (err: unknown) => void;
}
