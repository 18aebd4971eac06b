import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { errorMessage } from "../core/errors";
import { MailContent } from "./compose";
import { Outbox, OutboxCounts, OutboxMail } from "./outbox";
import type { MailTransport } from "./transport";

export interface RelayOptions {
  outbox: Outbox;
  transport: MailTransport;
  /** Domain of each Message-ID: the sender's. */
  messageIdDomain: string;
  /** Tries per mail for failures of that mail (a 4xx answer to it); a 5xx answer fails it at once. */
  maxAttempts?: number;
  /** The wait before the second try; it doubles for each further one. */
  retryDelayMs?: number;
  maxRetryDelayMs?: number;
  /** The first wait after the server could not be reached; it doubles while it stays down. */
  serverRetryMs?: number;
  maxServerRetryMs?: number;
  /** Mails in flight at once (the pool queues them over its connections). */
  maxInFlight?: number;
}

export interface FailedMail {
  id: string;
  to: string[];
  subject: string;
  attempts: number;
  error: string;
  queuedAt: string;
}

export interface RelayState extends OutboxCounts {
  /** Why the server cannot be used now (unreachable, refusing the login), or undefined. */
  serverDown?: string;
}

type Outcome = "sent" | "server" | "retry" | "permanent";

/**
 * One delivery pass: from the first send after the relay was idle until nothing is in flight,
 * cut at a minute when it goes on (a long burst, a server down) so that each pass is news.
 */
export interface DeliveryPass {
  startedAt: Date;
  endedAt: Date;
  /** Mails handed to the SMTP server. */
  attempts: number;
  /** Mails the server took. */
  sent: number;
  /** Mails the server refused for now (4xx): tried again later. */
  retried: number;
  /** Mails given up on (a 5xx, or their last try): marked failed in the outbox. */
  failed: number;
  /** Mails put back because the server could not be used (down, refusing the login): nothing charged to them. */
  deferred: number;
  /** The last refusal, or why the server could not be used. */
  lastError?: string;
}

/** The longest one delivery pass lasts before it is reported and another begins. */
const PASS_MAX_MS = 60_000;

/**
 * Sends the outbox: claims due mails, hands them to the pooled transport, and deletes each once
 * the server has taken it. A mail the server refuses for itself is tried again with backoff and,
 * after its last try or on a permanent refusal, marked failed and reported (`failed` event); it
 * stays in the outbox. When the server itself cannot be used (down, refusing connections or the
 * login), nothing is charged to the mails: sending pauses, one mail probes the server with a
 * growing wait, and everything resumes when it answers. Emits `state` when the counts change, and
 * `pass` (a DeliveryPass) at the end of each delivery pass.
 */
export class MailRelay extends EventEmitter {
  private readonly outbox: Outbox;
  private readonly maxAttempts: number;
  private readonly retryDelayMs: number;
  private readonly maxRetryDelayMs: number;
  private readonly serverRetryMs: number;
  private readonly maxServerRetryMs: number;
  private readonly maxInFlight: number;
  private readonly inFlight = new Set<Promise<void>>();
  /** Mails being stored that will be sent at once: their room is taken. */
  private reserved = 0;
  private waitingForRoom = false;
  private counts: OutboxCounts = { queued: 0, failed: 0 };
  private serverDown?: string;
  private serverFailures = 0;
  private resumeAt = 0;
  private wakeUp?: () => void;
  private woken = false;
  private running?: Promise<void>;
  private closed = false;
  /** Mails this relay holds a lease on (being sent): their leases are renewed until they are done. */
  private readonly holding = new Set<string>();
  /** Mails the server took whose removal from the outbox failed (the database was away): removed again, never sent again. */
  private readonly taken = new Set<string>();
  private removing?: Promise<void>;
  private renewal?: NodeJS.Timeout;
  private pass?: DeliveryPass;

  constructor(private readonly options: RelayOptions) {
    super();
    this.outbox = options.outbox;
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 6);
    this.retryDelayMs = options.retryDelayMs ?? 10_000;
    this.maxRetryDelayMs = options.maxRetryDelayMs ?? 15 * 60_000;
    this.serverRetryMs = options.serverRetryMs ?? 1000;
    this.maxServerRetryMs = options.maxServerRetryMs ?? 15_000;
    this.maxInFlight = options.maxInFlight ?? 200;
  }

  /** Prepares the outbox and starts sending what it holds, including mails stored before a restart. */
  async start(): Promise<void> {
    await this.outbox.migrate();
    await this.recount();
    this.renewal = setInterval(() => {
      if (this.holding.size || this.taken.size) this.outbox.renew([...this.holding, ...this.taken]).catch((err: unknown) => this.emit("warning", `leases could not be renewed: ${errorMessage(err)}`));
    }, Math.max(500, Math.floor(this.outbox.leaseMs / 3)));
    this.renewal.unref();
    this.running = this.pump();
  }

  /** Stores the mail; resolves with its id once it is safe in the outbox. */
  async accept(content: MailContent, to: string[]): Promise<string> {
    const id = randomUUID();
    const mail: OutboxMail = { id, messageId: `<${id}@${this.options.messageIdDomain}>`, createdAt: new Date(), to, subject: content.subject, text: content.text, html: content.html, kind: content.kind, attempts: 0 };
    // With room and a working server, the mail is stored leased to this relay and sent straight
    // away; otherwise it waits in the outbox for the pump, as mails from before a restart do.
    const direct = !this.closed && !this.serverDown && this.inFlight.size + this.reserved < this.maxInFlight;
    if (direct) this.reserved++;
    try {
      await this.outbox.add({ ...mail, leased: direct });
    } finally {
      if (direct) this.reserved--;
    }
    this.counts.queued++;
    this.changed();
    if (direct && !this.closed) this.track(this.deliver(mail));
    else if (direct) await this.outbox.release([id]).catch(() => undefined); // closing: for the next start (or the lease) to send
    else this.wake();
    return id;
  }

  /** Mails stored in this relay's outbox by someone else (an alert, in its own transaction): counted, and the pump looks now. */
  stored(count = 1): void {
    this.counts.queued += count;
    this.changed();
    this.wake();
  }

  get state(): RelayState {
    return { ...this.counts, serverDown: this.serverDown };
  }

  async failedMails(): Promise<FailedMail[]> {
    return (await this.outbox.failed()).map((m) => failure(m, m.attempts, m.lastError ?? ""));
  }

  async deleteFailed(ids?: string[]): Promise<string[]> {
    const deleted = await this.outbox.deleteFailed(ids);
    await this.recount();
    return deleted;
  }

  async retryFailed(ids?: string[]): Promise<string[]> {
    const retried = await this.outbox.retryFailed(ids);
    await this.recount();
    this.wake();
    return retried;
  }

  /**
   * Stops claiming and closes the transport at once: mails still waiting for a connection come back
   * and are handed back to the outbox (the next start sends them), while those with the server
   * finish (at most `graceMs`) and leave the outbox, so a redeploy sends nothing twice.
   */
  async close(graceMs = 12_000): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.outbox.hurry();
    this.wake();
    const transportClosed = this.options.transport.close();
    let timer: NodeJS.Timeout | undefined;
    const grace = new Promise<void>((r) => (timer = setTimeout(r, graceMs)));
    await Promise.race([Promise.all([this.running, ...this.inFlight, transportClosed]).catch(() => undefined), grace]);
    clearTimeout(timer);
    clearInterval(this.renewal);
    this.endPass();
    await this.outbox.flush().catch(() => undefined);
    await transportClosed;
  }

  private async pump(): Promise<void> {
    while (!this.closed) {
      try {
        if (this.taken.size) await this.removeTaken();
        const now = Date.now();
        if (this.serverDown && now < this.resumeAt) {
          await this.sleep(this.resumeAt - now);
          continue;
        }
        // While the server is down, one mail at a time probes it.
        // Claim in batches: with many in flight, wait until half the room is free again.
        const busy = this.inFlight.size + this.reserved;
        const room = this.serverDown ? (busy ? 0 : 1) : this.maxInFlight - busy;
        if (room <= 0 || (!this.serverDown && busy > 0 && room < this.maxInFlight / 2)) {
          this.waitingForRoom = true;
          await this.sleep(60_000);
          this.waitingForRoom = false;
          continue;
        }
        const mails = await this.outbox.claim(room);
        for (const mail of mails) this.track(this.taken.has(mail.id) ? this.removeTaken() : this.deliver(mail));
        // Fewer than there was room for: the outbox holds no more that are due. Mails sent
        // straight from `accept` need no claim, so the pump sleeps until something is due (a
        // retry, a lease that runs out) or news wakes it (mail held back, released, retried).
        if (mails.length < room) await this.sleep((await this.outbox.nextDueInMs()) ?? 60_000);
      } catch (err) {
        // The database is away: wait and try again; the mails are safe where they are.
        this.emit("warning", `the outbox could not be read: ${errorMessage(err)}`);
        await this.sleep(5000);
      }
    }
  }

  private track(work: Promise<void>): void {
    const tracked: Promise<void> = work
      .catch((err: unknown) => {
        this.emit("warning", `a mail's outcome could not be stored: ${errorMessage(err)}`);
        this.wake(); // its row stays leased until the lease runs out: the pump is to look then
      })
      .finally(() => {
        this.inFlight.delete(tracked);
        // Nothing in flight: the pass is over, unless the relay waits for the server to come back.
        if (this.inFlight.size === 0 && !this.serverDown) this.endPass();
        if (this.waitingForRoom) this.wake();
      });
    this.inFlight.add(tracked);
  }

  private async deliver(mail: OutboxMail): Promise<void> {
    this.holding.add(mail.id);
    try {
      await this.deliverHeld(mail);
    } finally {
      this.holding.delete(mail.id);
    }
  }

  private async deliverHeld(mail: OutboxMail): Promise<void> {
    if (this.serverDown && Date.now() < this.resumeAt) {
      await this.outbox.release([mail.id]);
      this.wake();
      return;
    }
    let outcome: Outcome;
    let reason = "";
    const pass = (this.pass ??= { startedAt: new Date(), endedAt: new Date(), attempts: 0, sent: 0, retried: 0, failed: 0, deferred: 0 });
    try {
      await this.options.transport.send({ messageId: mail.messageId, date: mail.createdAt, to: mail.to, subject: mail.subject, text: mail.text, html: mail.html });
      outcome = "sent";
    } catch (err) {
      // Closing: a mail the server never answered for was not taken (it waited for a connection).
      if (this.closed && !(err as { responseCode?: number })?.responseCode) {
        await this.outbox.release([mail.id]);
        return;
      }
      outcome = classify(err);
      reason = describeSmtpError(err);
    }
    pass.attempts++;
    if (outcome === "sent") pass.sent++;
    else if (outcome === "server") pass.deferred++;
    else if (outcome === "retry" && mail.attempts + 1 < this.maxAttempts) pass.retried++;
    else pass.failed++;
    if (reason) pass.lastError = reason;
    if (Date.now() - pass.startedAt.getTime() >= PASS_MAX_MS) this.endPass();
    switch (outcome) {
      case "sent":
        try {
          await this.outbox.sent(mail.id, this.inFlight.size > 1);
        } catch (err) {
          // The server has it: from now on it is only to be removed, when the database is back.
          this.taken.add(mail.id);
          throw err;
        }
        this.counts.queued = Math.max(0, this.counts.queued - 1);
        if (this.serverDown) this.serverUp();
        this.changed();
        return;
      case "server":
        await this.outbox.release([mail.id]);
        this.serverUnusable(reason);
        this.wake();
        return;
      case "retry":
        if (mail.attempts + 1 < this.maxAttempts) {
          await this.outbox.retryLater(mail.id, this.retryDelay(mail.attempts + 1), reason);
          if (this.serverDown) this.serverUp();
          this.wake(); // the pump is to wait for this retry too
          return;
        }
        break;
      case "permanent":
        break;
    }
    await this.outbox.fail(mail.id, reason);
    this.counts.queued = Math.max(0, this.counts.queued - 1);
    this.counts.failed++;
    if (this.serverDown) this.serverUp();
    this.changed();
    this.emit("failed", failure(mail, mail.attempts + 1, reason));
  }

  /** Reports the pass under way, if any; the next send begins another. */
  private endPass(): void {
    const pass = this.pass;
    this.pass = undefined;
    if (!pass || pass.attempts === 0) return;
    pass.endedAt = new Date();
    try {
      this.emit("pass", pass);
    } catch (err) {
      this.emit("warning", `a delivery pass could not be reported: ${errorMessage(err)}`);
    }
  }

  /** Removes the mails the server took while the database was away (one removal at a time). */
  private removeTaken(): Promise<void> {
    this.removing ??= (async () => {
      const ids = [...this.taken];
      await Promise.all(ids.map((id) => this.outbox.sent(id, ids.length > 1)));
      for (const id of ids) this.taken.delete(id);
      this.counts.queued = Math.max(0, this.counts.queued - ids.length);
      this.changed();
    })().finally(() => (this.removing = undefined));
    return this.removing;
  }

  private retryDelay(attempt: number): number {
    const base = Math.min(this.maxRetryDelayMs, this.retryDelayMs * 2 ** (attempt - 1));
    return base * (0.8 + Math.random() * 0.4); // jitter, so retries of a burst spread out
  }

  private serverUnusable(reason: string): void {
    const wasDown = !!this.serverDown;
    // Many mails in flight fail together when a server goes away: that is one failure, not many.
    if (wasDown && Date.now() < this.resumeAt) return;
    this.serverFailures++;
    this.serverDown = reason;
    this.resumeAt = Date.now() + Math.min(this.maxServerRetryMs, this.serverRetryMs * 2 ** (this.serverFailures - 1));
    this.changed();
  }

  private serverUp(): void {
    this.serverDown = undefined;
    this.serverFailures = 0;
    this.resumeAt = 0;
    this.changed();
    this.wake();
  }

  private async recount(): Promise<void> {
    this.counts = await this.outbox.counts();
    this.changed();
  }

  private changed(): void {
    this.emit("state", this.state);
  }

  private wake(): void {
    this.woken = true;
    const wake = this.wakeUp;
    this.wakeUp = undefined;
    wake?.();
  }

  /** Sleeps up to `ms`, or until woken (a new mail, a free slot, close). */
  private sleep(ms: number): Promise<void> {
    if (this.woken || this.closed) {
      this.woken = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.max(1, Math.min(ms, 60_000)));
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = () => {
        done();
      };
    }).then(() => {
      this.woken = false;
    });
  }
}

function failure(mail: OutboxMail, attempts: number, error: string): FailedMail {
  return { id: mail.id, to: mail.to, subject: mail.subject, attempts, error, queuedAt: mail.createdAt.toISOString() };
}

const SERVER_CODES = new Set(["ECONNECTION", "ETIMEDOUT", "ESOCKET", "EDNS", "ETLS", "EREQUIRETLS", "EAUTH", "ENOAUTH", "EOAUTH2", "ECONNREFUSED", "ECONNRESET", "EPIPE", "EPROTOCOL"]);

/**
 * What a send failure says about whom to blame: the server (down, overloaded, refusing the
 * connection or the login: wait and probe, charge no mail), this mail for now (4xx), or this
 * mail for good (5xx).
 */
export function classify(err: unknown): Exclude<Outcome, "sent"> {
  const e = err as { code?: string; responseCode?: number };
  const code = e?.responseCode;
  if (code === 421 || code === 454) return "server";
  if (e?.code && SERVER_CODES.has(e.code)) return "server";
  if (e?.code === "EENVELOPE" && !code) return "permanent"; // no valid recipient at all
  if (typeof code === "number" && code >= 500) return "permanent";
  return "retry";
}

export function describeSmtpError(err: unknown): string {
  const e = err as { code?: string; responseCode?: number; response?: string };
  const text = e?.response || errorMessage(err);
  return `${e?.code ? `${e.code}: ` : ""}${text}`.slice(0, 500);
}
