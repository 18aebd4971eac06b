// The SMTP side of the relays, in one worker thread per Node-RED process: nodemailer's pooled
// transports build each MIME message, encrypt it and talk SMTP here, so a burst of mail does not
// hold up the flows (and the HTTP answers) on Node-RED's own thread. Each relay's transport is a
// pool of its own in the thread, opened with `open` and ended with `close`; the thread outlives
// redeploys, so a new deploy neither waits for a thread to start nor runs cold code. OAuth2 tokens
// are asked of the parent, which holds the identity client.
import { parentPort, workerData } from "node:worker_threads";
import nodemailer, { Transporter } from "nodemailer";
import type SMTPPool from "nodemailer/lib/smtp-pool";
import type { OutgoingMail } from "./transport";

export const SMTP_THREAD = "gluework-smtp";

export type ToThread =
  | { type: "open"; pool: number; options: SMTPPool.Options; sender: string; oauth2User?: string }
  | { type: "send"; mails: Array<{ pool: number; seq: number; mail: OutgoingMail }> }
  | { type: "token"; pool: number; seq: number; token?: string; expires?: number; error?: ThreadError }
  | { type: "close"; pool: number };

export type FromThread =
  | { type: "results"; results: Array<{ seq: number; error?: ThreadError }> }
  | { type: "token"; pool: number; seq: number; renew: boolean }
  | { type: "closed"; pool: number };

/** What the relay reads of a nodemailer error (its class of failure and the server's answer). */
export interface ThreadError {
  message: string;
  code?: string;
  responseCode?: number;
  response?: string;
  command?: string;
}

export function toThreadError(err: unknown): ThreadError {
  const e = (err ?? {}) as Partial<ThreadError>;
  return {
    message: typeof e.message === "string" ? e.message : String(err),
    code: typeof e.code === "string" ? e.code : undefined,
    responseCode: typeof e.responseCode === "number" ? e.responseCode : undefined,
    response: typeof e.response === "string" ? e.response : undefined,
    command: typeof e.command === "string" ? e.command : undefined,
  };
}

export function fromThreadError(error: ThreadError): Error {
  return Object.assign(new Error(error.message), error);
}

type TokenCallback = (err: Error | null, token?: string, expires?: number) => void;

interface Pool {
  transporter: Transporter<SMTPPool.SentMessageInfo>;
  sender: string;
  tokenWaits: Map<number, TokenCallback>;
}

if (parentPort && workerData === SMTP_THREAD) {
  const port = parentPort;
  const pools = new Map<number, Pool>();
  let tokenSeq = 0;

  // Outcomes of one turn of the event loop go back together: one message instead of many.
  let results: Array<{ seq: number; error?: ThreadError }> = [];
  const report = (result: { seq: number; error?: ThreadError }) => {
    if (!results.length) {
      setImmediate(() => {
        const batch = results;
        results = [];
        port.postMessage({ type: "results", results: batch } satisfies FromThread);
      });
    }
    results.push(result);
  };

  const send = (poolId: number, seq: number, mail: OutgoingMail) => {
    const pool = pools.get(poolId);
    const sending = pool
      ? pool.transporter.sendMail({
          from: pool.sender,
          to: mail.to,
          subject: mail.subject,
          text: mail.text,
          html: mail.html,
          messageId: mail.messageId,
          date: mail.date,
          disableFileAccess: true,
          disableUrlAccess: true,
        })
      : Promise.reject(Object.assign(new Error("the SMTP connection is closed"), { code: "ECONNECTION" }));
    sending.then(
      () => report({ seq }),
      (err: unknown) => report({ seq, error: toThreadError(err) }),
    );
  };

  port.on("message", (message: ToThread) => {
    switch (message.type) {
      case "open": {
        const poolId = message.pool;
        const tokenWaits = new Map<number, TokenCallback>();
        const options: SMTPPool.Options = { ...message.options };
        if (message.oauth2User) {
          options.auth = {
            type: "OAuth2",
            user: message.oauth2User,
            provisionCallback: (_user: string, renew: boolean, callback: TokenCallback) => {
              const seq = ++tokenSeq;
              tokenWaits.set(seq, callback);
              port.postMessage({ type: "token", pool: poolId, seq, renew } satisfies FromThread);
            },
          } as SMTPPool.Options["auth"];
        }
        const transporter = nodemailer.createTransport(options);
        // An idle pooled connection that breaks reports here; the next send reconnects.
        transporter.on("error", () => undefined);
        pools.set(poolId, { transporter, sender: message.sender, tokenWaits });
        return;
      }
      case "send":
        for (const { pool, seq, mail } of message.mails) send(pool, seq, mail);
        return;
      case "token": {
        const waits = pools.get(message.pool)?.tokenWaits;
        const callback = waits?.get(message.seq);
        waits?.delete(message.seq);
        if (message.error) callback?.(fromThreadError(message.error));
        else callback?.(null, message.token, message.expires);
        return;
      }
      case "close":
        pools.get(message.pool)?.transporter.close();
        pools.delete(message.pool);
        port.postMessage({ type: "closed", pool: message.pool } satisfies FromThread);
        return;
    }
  });
}
