import { ConfigError, InputError, PipelineError, errorMessage } from "../core/errors";
import { ianaZone } from "../core/time";
import { DatabaseProvider, configNode } from "../core/node/config";
import { handleInput } from "../core/node/input";
import { Lifecycle } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { StatusReporter, formatCount, isSetupGap } from "../core/node/status";
import type { Node, NodeAPI, NodeDef, NodeMessage } from "../core/node/types";
import { composeMail } from "../mail/compose";
import { Outbox } from "../mail/outbox";
import { allowedList, addressList, recipientsFor } from "../mail/recipients";
import { DeliveryPass, MailRelay, RelayState } from "../mail/relay";
import { runRecorder } from "../core/node/runs";
import type { FinishedRun } from "../core/runs";
import { SmtpProvider, SmtpTransport } from "../mail/transport";

interface MailRelayDef extends NodeDef {
  smtp: string;
  database: string;
  to: string;
  allowed: string;
  subject: string;
  maxKiB: string;
  retries: string;
  retryDelay: string;
  timeZone?: string;
}

const COMMANDS = ["list", "delete", "retry", "status"];

export = function register(RED: NodeAPI) {
  function MailRelayNode(this: Node, def: MailRelayDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    const status = new StatusReporter(node);
    const life = new Lifecycle(node);
    const maxBytes = (Number(config.maxKiB) || 256) * 1024;
    // An unknown zone must not cost an alert: its times are then shown in UTC, labelled so.
    const timeZone = config.timeZone?.trim() ? (ianaZone(config.timeZone.trim()) ?? "UTC") : undefined;
    if (config.timeZone?.trim() && !ianaZone(config.timeZone.trim())) node.warn(`"${config.timeZone}" is not a time zone (such as Europe/Brussels): alert times are shown in UTC`);
    let opening: Promise<MailRelay> | undefined;
    let latest: RelayState | undefined;
    // Each delivery pass is a run: one row per pass, however many mails it sent.
    const runs = runRecorder(node, life, "mail-relay", () => (config.database ? (RED.nodes.getNode(config.database) as DatabaseProvider | null)?.database() : undefined));

    // The outbox starts with the node, so mails stored before a restart go out without new input.
    const relay = (): Promise<MailRelay> => {
      opening ??= openRelay().catch((err: unknown) => {
        opening = undefined;
        status.error(err instanceof PipelineError ? err.status : "outbox unavailable");
        throw err;
      });
      return opening;
    };
    async function openRelay(): Promise<MailRelay> {
      const smtp = configNode<SmtpProvider>(RED, config.smtp, "smtp-connection", "SMTP connection").settings();
      // The database stays open until this relay has stored the outcome of every mail it holds.
      const db = await life.uses(configNode<DatabaseProvider>(RED, config.database, "postgres-database", "outbox database")).database();
      if (life.isClosed) throw new ConfigError("the mail-relay node was closed");
      const outbox = new Outbox(db, node.id);
      const retries = config.retries === "" || config.retries === undefined ? 5 : Number(config.retries);
      const mailRelay = new MailRelay({
        outbox,
        transport: new SmtpTransport(smtp),
        messageIdDomain: smtp.sender.split("@").pop() || "node-red.local",
        maxAttempts: retries + 1,
        retryDelayMs: (Number(config.retryDelay) || 10) * 1000,
      });
      mailRelay.on("state", (s: RelayState) => (latest = s));
      mailRelay.on("failed", (failed) => node.send([null, null, { topic: "failed", payload: failed }]));
      mailRelay.on("warning", (m: string) => node.warn(m));
      mailRelay.on("pass", (pass: DeliveryPass) => void runs.record(passRun(pass)));
      life.onClose(() => mailRelay.close());
      await mailRelay.start();
      return mailRelay;
    }
    void relay().catch((err) => {
      // A redeploy closes the node while its outbox opens: nothing went wrong then.
      // A relay not configured yet says so in its status; it tries again every 10 s.
      if (!life.isClosed && !isSetupGap(err)) node.warn(`the outbox could not be opened (${errorMessage(err)}); trying again in 10 s`);
    });
    life.interval(() => {
      if (!opening) void relay().catch(() => undefined);
    }, 10_000);
    life.interval(() => showState(), 250); // at most four status updates a second, however busy
    life.onClose(() => status.clear());

    function showState(): void {
      const s = latest;
      if (!s) return;
      latest = undefined;
      const queued = `${formatCount(s.queued)} queued`;
      if (s.serverDown) status.warn(`SMTP down · ${queued}`);
      else if (s.failed) status.error(`${formatCount(s.failed)} failed · ${queued}`);
      else if (s.queued) status.busy(queued);
      else status.ready("0 queued");
    }

    handleInput(node, status, async (msg, send) => {
      const refuse = (statusCode: number, reason: string) => {
        msg.statusCode = statusCode;
        msg.payload = { message: reason };
        send([null, msg, null]);
      };
      const command = typeof msg.topic === "string" && msg.topic.startsWith("outbox:") ? msg.topic.slice(7) : undefined;
      if (command !== undefined) {
        if (!COMMANDS.includes(command)) throw new InputError(`unknown command "${msg.topic}": use outbox:list, outbox:delete, outbox:retry or outbox:status`);
        msg.payload = await runCommand(await relay(), command, msg);
        send([null, null, msg]);
        return;
      }
      let content: ReturnType<typeof composeMail>;
      let to: string[];
      try {
        const size = bodyBytes(msg.payload);
        if (size > maxBytes) return refuse(413, `the message is ${Math.ceil(size / 1024)} KiB; this relay takes at most ${maxBytes / 1024} KiB`);
        to = recipientsFor(msg.to, addressList(config.to, "the node's recipients"), allowedList(config.allowed));
        content = composeMail(msg.payload, config.subject || "Monitoring message", { timeZone });
      } catch (err) {
        // Whatever the body is, the caller gets an answer: a refusal it should not retry.
        refuse(400, err instanceof InputError ? err.message : "the body could not be read as a message");
        if (err instanceof InputError) return;
        throw err;
      }
      let id: string;
      try {
        id = await (await relay()).accept(content, to);
      } catch (err) {
        // Not stored: say so, so the sender (Alertmanager retries on 5xx) tries again.
        refuse(503, "the message could not be stored; try again later");
        throw err;
      }
      msg.statusCode = 202;
      msg.payload = { id, message: "monitoring message queued" };
      send([msg, null, null]);
    }, { life });
  }

  async function runCommand(relay: MailRelay, command: string, msg: NodeMessage): Promise<unknown> {
    switch (command) {
      case "list":
        return relay.failedMails();
      case "delete":
        return { deleted: await relay.deleteFailed(idsFrom(msg.payload)) };
      case "retry":
        return { retrying: await relay.retryFailed(idsFrom(msg.payload)) };
      default:
        return relay.state;
    }
  }

  /** A delivery pass as a run: partial when some mails did not go (yet), failed when none did. */
  function passRun(pass: DeliveryPass): FinishedRun {
    const notSent = pass.failed + pass.retried + pass.deferred;
    const outcome = notSent === 0 ? "success" : pass.sent > 0 ? "partial" : "failure";
    const parts = [pass.failed && `${formatCount(pass.failed)} failed`, pass.retried && `${formatCount(pass.retried)} to be tried again`, pass.deferred && `${formatCount(pass.deferred)} waiting for the SMTP server`].filter(Boolean);
    return {
      startedAt: pass.startedAt,
      endedAt: pass.endedAt,
      outcome,
      counts: { rows: pass.sent, requests: pass.attempts, retries: pass.retried + pass.deferred },
      error: notSent ? new PipelineError(`${formatCount(pass.sent)} of ${formatCount(pass.attempts)} mails sent; ${parts.join(", ")}${pass.lastError ? `: ${pass.lastError}` : ""}`, { code: "GW_MAIL_NOT_SENT", partial: outcome === "partial" }) : undefined,
      details: { sent: pass.sent, retried: pass.retried, failed: pass.failed, deferred: pass.deferred },
    };
  }

  /** The body's size as sent; a body that cannot be written as JSON counts as too big. */
  function bodyBytes(payload: unknown): number {
    if (typeof payload === "string") return Buffer.byteLength(payload);
    if (Buffer.isBuffer(payload)) return payload.length;
    try {
      return Buffer.byteLength(JSON.stringify(payload) ?? "");
    } catch {
      throw new InputError("the body cannot be read as JSON");
    }
  }

  /** msg.payload of a command: one id, a list, or "all" for every failed mail. */
  function idsFrom(payload: unknown): string[] | undefined {
    if (payload === "all") return undefined;
    const ids = Array.isArray(payload) ? payload : [payload];
    if (!ids.length || ids.some((id) => typeof id !== "string" || !id)) throw new InputError('msg.payload must be a mail id, a list of ids, or "all"');
    return ids as string[];
  }

  RED.nodes.registerType("mail-relay", MailRelayNode);
};
