import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { SMTPServer, SMTPServerOptions } from "smtp-server";

export interface ReceivedMail {
  id: string;
  from: string;
  to: string[];
  raw: string;
  receivedAt: number;
}

export interface SmtpSinkOptions {
  /** Keep each message as an .eml file here (the demo); in memory only when absent (tests). */
  dir?: string;
  /** Offer STARTTLS with this key and certificate (PEM). */
  tls?: { key: string; cert: string };
  /** Require AUTH with these credentials. */
  auth?: { user: string; pass: string };
  /** Require AUTH XOAUTH2 (Office 365's way) and accept the access tokens this says are valid. */
  oauth?: (user: string, accessToken: string) => boolean;
  /** Refuse more than this many simultaneous connections (421), as strict MTAs do. */
  maxClients?: number;
  /** Answer each mail only this long after its data ended (a slow server); it is kept at the answer. */
  answerDelayMs?: number;
  /** Further smtp-server options (tests make failure modes with them). */
  serverOptions?: Partial<SMTPServerOptions>;
}

/** A header of a received mail, unfolded (`Subject`, `Message-ID`, …), or undefined. */
export function mailHeader(raw: string, name: string): string | undefined {
  const head = raw.split(/\r?\n\r?\n/, 1)[0] ?? "";
  const unfolded = head.replace(/\r?\n[ \t]+/g, " ");
  const match = new RegExp(`^${name}:[ \\t]*(.*)$`, "im").exec(unfolded);
  return match ? match[1]!.trim() : undefined;
}

/**
 * A local SMTP server that keeps what it receives: the demo's mail server and the tests' inbox.
 * It is smtp-server, so it greets each new connection only after 100 ms (its early-talker check).
 */
export class SmtpSink {
  readonly received: ReceivedMail[] = [];
  /** Connections accepted, and the most open at once. */
  readonly stats = { connections: 0, open: 0, peakOpen: 0, /** Mails whose data ended and that wait for the answer. */ answering: 0 };
  private server?: SMTPServer;
  private listeners: Array<(mail: ReceivedMail) => void> = [];
  port = 0;

  constructor(private readonly options: SmtpSinkOptions = {}) {}

  async listen(port = 0, host = "127.0.0.1"): Promise<number> {
    const { tls, auth, oauth, dir, maxClients } = this.options;
    const needsAuth = !!auth || !!oauth;
    const methods = [...(auth ? ["PLAIN", "LOGIN"] : []), ...(oauth ? ["XOAUTH2"] : [])];
    if (dir) await fs.mkdir(dir, { recursive: true });
    this.server = new SMTPServer({
      secure: false,
      disableReverseLookup: true,
      logger: false,
      hideSTARTTLS: !tls,
      ...(tls ? { key: tls.key, cert: tls.cert } : {}),
      authOptional: !needsAuth,
      ...(needsAuth ? { authMethods: methods, allowInsecureAuth: false } : { disabledCommands: tls ? [] : ["STARTTLS", "AUTH"] }),
      maxClients,
      size: 25 * 1024 * 1024,
      closeTimeout: 1000, // a stopped server drops its idle clients at once, as a real outage does
      onConnect: (_session, callback) => {
        this.stats.connections++;
        this.stats.open++;
        this.stats.peakOpen = Math.max(this.stats.peakOpen, this.stats.open);
        callback();
      },
      onClose: () => {
        this.stats.open = Math.max(0, this.stats.open - 1);
      },
      onAuth: (a, _session, callback) => {
        if (a.method === "XOAUTH2") {
          if (oauth && a.username && a.accessToken && oauth(a.username, a.accessToken)) return callback(null, { user: a.username });
          return callback(null, { data: { status: "401", schemes: "bearer" } });
        }
        if (auth && a.username === auth.user && a.password === auth.pass) return callback(null, { user: a.username });
        return callback(new Error("Invalid username or password"));
      },
      onData: (stream, session, callback) => {
        const chunks: Buffer[] = [];
        stream.on("data", (c: Buffer) => chunks.push(c));
        stream.on("error", callback);
        stream.on("end", () => {
          const mail: ReceivedMail = {
            id: `${Date.now()}-${randomBytes(4).toString("hex")}`,
            from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "",
            to: session.envelope.rcptTo.map((r) => r.address),
            raw: Buffer.concat(chunks).toString("utf8"),
            receivedAt: Date.now(),
          };
          const take = () =>
            this.store(mail).then(
              () => callback(),
              (err: Error) => callback(err),
            );
          const delay = this.options.answerDelayMs ?? 0;
          if (!delay) return void take();
          this.stats.answering++;
          setTimeout(() => {
            this.stats.answering--;
            void take();
          }, delay);
        });
      },
      ...this.options.serverOptions,
    });
    this.server.on("error", () => undefined); // a client's broken connection is not the sink's failure
    await new Promise<void>((resolve, reject) => {
      this.server!.server.once("error", reject);
      this.server!.listen(port, host, () => resolve());
    });
    this.port = (this.server.server.address() as AddressInfo).port;
    return this.port;
  }

  /** Forgets what was received and counted. */
  reset(): void {
    this.received.length = 0;
    Object.assign(this.stats, { connections: 0, peakOpen: this.stats.open });
  }

  /** Calls `listener` for every mail from now on. */
  onMail(listener: (mail: ReceivedMail) => void): () => void {
    this.listeners.push(listener);
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    };
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  private async store(mail: ReceivedMail): Promise<void> {
    if (this.options.dir) await fs.writeFile(path.join(this.options.dir, `${mail.id}.eml`), mail.raw);
    this.received.push(mail);
    for (const listener of this.listeners) listener(mail);
  }
}
