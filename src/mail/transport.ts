import { isIP } from "node:net";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { ConfidentialClientApplication } from "@azure/msal-node";
import type SMTPPool from "nodemailer/lib/smtp-pool";
import { ConfigError, PipelineError } from "../core/errors";
import { redact, registerSecret } from "../core/redact";
import { CappedNetworkClient } from "../graph/app-token";
import { FromThread, SMTP_THREAD, ThreadError, ToThread, fromThreadError, toThreadError } from "./smtp-thread";

/** The settings of an SMTP config node. */
export interface SmtpSettings {
  host: string;
  port: number;
  /** "starttls": plain connection upgraded before AUTH (587); "tls": TLS from the first byte (465). */
  security: "starttls" | "tls" | "none";
  /** Check the server's certificate (off only for a test server with a self-signed one). */
  verifyCertificate: boolean;
  auth: "password" | "oauth2" | "none";
  user?: string;
  password?: string;
  /** Office 365 through XOAUTH2, with a client-credentials token from Microsoft identity. */
  oauth?: { tenantId: string; clientId: string; clientSecret: string; loginHost?: string };
  /** The From address (and the domain of each Message-ID). */
  sender: string;
  /** Connections kept open; each carries any number of messages. */
  poolSize: number;
}

/** What an smtp-connection config node offers: its settings, from which each relay opens its pool. */
export interface SmtpProvider {
  readonly type: "smtp-connection";
  settings(): SmtpSettings;
}

/** One mail as the relay hands it to the server. */
export interface OutgoingMail {
  messageId: string;
  date: Date;
  to: string[];
  subject: string;
  text: string;
  /** An HTML alternative to the text, when the mail has one. */
  html?: string;
}

export interface MailTransport {
  send(mail: OutgoingMail): Promise<void>;
  close(): Promise<void>;
}

const OFFICE365_SCOPE = "https://outlook.office365.com/.default";

type Provision = (user: string, renew: boolean, callback: (err: Error | null, token?: string, expires?: number) => void) => void;

/**
 * nodemailer's pooled SMTP transport: a few connections kept open, each sending any number of
 * messages (a new connection costs a TLS handshake, an AUTH and, on some servers, a greeting delay).
 * Every mail keeps the Message-ID and Date it was given when queued, so a retry is the same mail.
 * The pool lives in the process's SMTP thread (`smtp-thread.ts`): building, encrypting and sending
 * a burst of mail then takes a second core instead of Node-RED's event loop.
 */
export class SmtpTransport implements MailTransport {
  private readonly options: SMTPPool.Options;
  private readonly provision?: Provision;
  private readonly pool = ++poolCount;
  private openedOn?: Worker;
  private closed = false;

  constructor(readonly settings: SmtpSettings) {
    if (!settings.host) throw new ConfigError("the SMTP connection has no host", { status: "missing SMTP host" });
    if (!settings.sender) throw new ConfigError("the SMTP connection has no sender address", { status: "missing sender address" });
    registerSecret(settings.password);
    registerSecret(settings.oauth?.clientSecret);
    const options: SMTPPool.Options = {
      pool: true,
      host: settings.host,
      port: settings.port || (settings.security === "tls" ? 465 : 587),
      secure: settings.security === "tls",
      requireTLS: settings.security === "starttls",
      ignoreTLS: settings.security === "none",
      tls: { rejectUnauthorized: settings.verifyCertificate, ...(isIP(settings.host) ? {} : { servername: settings.host }) },
      maxConnections: Math.max(1, settings.poolSize || 5),
      maxMessages: Infinity,
      connectionTimeout: 15_000,
      greetingTimeout: 15_000,
      socketTimeout: 60_000,
      disableFileAccess: true,
      disableUrlAccess: true,
    };
    if (settings.auth === "password") {
      if (!settings.user) throw new ConfigError("the SMTP connection uses a password but has no user", { status: "missing SMTP user" });
      options.auth = { user: settings.user, pass: settings.password ?? "" };
    } else if (settings.auth === "oauth2") {
      this.provision = office365Tokens(settings);
    }
    this.options = options;
  }

  send(mail: OutgoingMail): Promise<void> {
    if (this.closed) return Promise.reject(Object.assign(new Error("the SMTP transport is closed"), { code: "ECONNECTION" }));
    const thread = smtpThread.worker();
    if (this.openedOn !== thread) {
      // A first send, or the thread was started anew: the pool is opened there.
      this.openedOn = thread;
      smtpThread.open(this, {
        type: "open",
        pool: this.pool,
        options: this.options,
        sender: this.settings.sender,
        oauth2User: this.provision ? this.settings.user || this.settings.sender : undefined,
      });
    }
    return smtpThread.send(this.pool, mail);
  }

  /** Gives the pool's connections back (QUIT); mails still queued in it fail as a closed connection. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.openedOn) await smtpThread.close(this.pool, this.openedOn);
    this.openedOn = undefined;
  }

  /** A token for XOAUTH2, asked for by the thread. */
  token(renew: boolean, answer: (result: { token?: string; expires?: number; error?: ThreadError }) => void): void {
    try {
      this.provision!("", renew, (err, token, expires) => answer(err ? { error: toThreadError(err) } : { token, expires }));
    } catch (err) {
      answer({ error: toThreadError(err) });
    }
  }
}

let poolCount = 0;

/** The process's one SMTP thread, started with the first mail and started again if it ever ends. */
class SmtpThread {
  private thread?: Worker;
  private seq = 0;
  private readonly pending = new Map<number, { resolve: () => void; reject: (err: Error) => void }>();
  private readonly transports = new Map<number, SmtpTransport>();
  private readonly closing = new Map<number, () => void>();
  private outgoing: Array<{ pool: number; seq: number; mail: OutgoingMail }> = [];

  worker(): Worker {
    return this.thread ?? this.start();
  }

  async stop(): Promise<void> {
    await this.thread?.terminate();
  }

  open(transport: SmtpTransport, message: Extract<ToThread, { type: "open" }>): void {
    this.transports.set(message.pool, transport);
    this.worker().postMessage(message);
  }

  send(pool: number, mail: OutgoingMail): Promise<void> {
    const thread = this.worker();
    const seq = ++this.seq;
    return new Promise<void>((resolve, reject) => {
      if (!this.pending.size) thread.ref(); // a mail on its way keeps the process alive
      this.pending.set(seq, { resolve, reject });
      // Mails handed over in one turn of the event loop cross to the thread in one message.
      if (!this.outgoing.length) {
        queueMicrotask(() => {
          const mails = this.outgoing;
          this.outgoing = [];
          if (this.thread === thread) thread.postMessage({ type: "send", mails } satisfies ToThread);
        });
      }
      this.outgoing.push({ pool, seq, mail });
    });
  }

  async close(pool: number, on: Worker): Promise<void> {
    this.transports.delete(pool);
    if (this.thread !== on) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, 5000);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.closing.set(pool, done);
      on.postMessage({ type: "close", pool } satisfies ToThread);
    });
    this.closing.delete(pool);
  }

  private start(): Worker {
    const thread = new Worker(path.join(__dirname, "smtp-thread.js"), { workerData: SMTP_THREAD });
    this.thread = thread;
    thread.on("message", (message: FromThread) => {
      switch (message.type) {
        case "results":
          for (const { seq, error } of message.results) {
            const waiting = this.pending.get(seq);
            this.pending.delete(seq);
            if (error) waiting?.reject(fromThreadError(error));
            else waiting?.resolve();
          }
          if (!this.pending.size) thread.unref();
          return;
        case "token": {
          const { pool, seq } = message;
          const transport = this.transports.get(pool);
          const answer = (result: { token?: string; expires?: number; error?: ThreadError }) => {
            if (this.thread === thread) thread.postMessage({ type: "token", pool, seq, ...result } satisfies ToThread);
          };
          if (transport) transport.token(message.renew, answer);
          else answer({ error: { message: "the SMTP connection is closed", code: "ECONNECTION" } });
          return;
        }
        case "closed":
          this.closing.get(message.pool)?.();
          return;
      }
    });
    thread.on("error", () => undefined); // reported to the mails through `exit`
    thread.on("exit", () => {
      if (this.thread !== thread) return;
      this.thread = undefined;
      this.outgoing = [];
      const lost = [...this.pending.values()];
      this.pending.clear();
      for (const p of lost) p.reject(Object.assign(new Error("the SMTP thread stopped"), { code: "ECONNECTION" }));
      for (const done of this.closing.values()) done();
    });
    // Idle open pools must not keep a stopping Node-RED alive; mails on their way do (see send).
    // (After the listeners: adding a message listener refs the thread again.)
    thread.unref();
    return thread;
  }
}

const smtpThread = new SmtpThread();

/**
 * Ends the process's SMTP thread with every pool in it: the mails they hold fail as on a broken
 * connection (the relays try them again) and the next mail starts a new thread.
 */
export function stopSmtpThread(): Promise<void> {
  return smtpThread.stop();
}

/** nodemailer's XOAUTH2 provision callback, fed by msal-node's client-credentials grant (cached by msal). */
function office365Tokens(settings: SmtpSettings) {
  const oauth = settings.oauth;
  if (!oauth?.tenantId || !oauth.clientId || !oauth.clientSecret) {
    throw new ConfigError("OAuth2 for Office 365 needs the tenant id, the client id and the client secret of an app allowed to send as the mailbox");
  }
  const authority = `https://login.microsoftonline.com/${oauth.tenantId}`;
  const loginHost = oauth.loginHost?.replace(/\/+$/, "");
  const network = new CappedNetworkClient();
  const app = new ConfidentialClientApplication({
    // msal's own client reads answers whole and gives a POST no deadline.
    system: { networkClient: network },
    auth: {
      clientId: oauth.clientId,
      clientSecret: oauth.clientSecret,
      authority,
      // A stand-in identity host (tests, the demo) is reached through metadata, as msal wants https authorities.
      ...(loginHost
        ? {
            authorityMetadata: JSON.stringify({
              token_endpoint: `${loginHost}/${oauth.tenantId}/oauth2/v2.0/token`,
              issuer: `${loginHost}/${oauth.tenantId}/v2.0`,
              authorization_endpoint: `${loginHost}/${oauth.tenantId}/oauth2/v2.0/authorize`,
              jwks_uri: `${loginHost}/${oauth.tenantId}/discovery/v2.0/keys`,
            }),
          }
        : {}),
    },
  });
  return (_user: string, renew: boolean, callback: (err: Error | null, token?: string, expires?: number) => void) => {
    network.failure = undefined;
    app.acquireTokenByClientCredential({ scopes: [OFFICE365_SCOPE], skipCache: renew }).then(
      (result) => {
        if (!result?.accessToken) return callback(new PipelineError("Microsoft identity gave no access token for SMTP", { code: "EOAUTH2" }));
        registerSecret(result.accessToken);
        callback(null, result.accessToken, result.expiresOn?.getTime());
      },
      (err: Error) => {
        // A failure of the network client (too large, no answer) in its own words, not msal's code.
        const failure = network.failure;
        network.failure = undefined;
        if (failure) return callback(new PipelineError(`no SMTP token from Microsoft identity: ${redact((failure as Error)?.message ?? String(failure))}`, { cause: failure, code: "EOAUTH2" }));
        callback(new PipelineError(`Microsoft identity refused the SMTP token request: ${redact(err.message)}`, { cause: err, code: "EOAUTH2" }));
      },
    );
  };
}
