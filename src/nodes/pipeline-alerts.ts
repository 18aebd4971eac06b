import { Alert, AlertRule, AlertWatch, parseDuration } from "../core/alerts";
import { ConfigError, InputError, asPipelineError, errorMessage } from "../core/errors";
import { DatabaseProvider, configNode } from "../core/node/config";
import { handleInput } from "../core/node/input";
import { Lifecycle } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { StatusReporter, isSetupGap } from "../core/node/status";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";
import { runLog } from "../core/runs";
import { ianaZone } from "../core/time";
import { Outbox } from "../mail/outbox";
import { addressList } from "../mail/recipients";
import { MailRelay, RelayState } from "../mail/relay";
import { SmtpProvider, SmtpTransport } from "../mail/transport";

interface RuleDef {
  scope?: AlertRule["scope"];
  match?: string;
  to?: string;
  every?: string;
  grace?: string;
}

interface PipelineAlertsDef extends NodeDef {
  database: string;
  smtp: string;
  /** Recipients of the rules that name none. */
  to: string;
  rules?: RuleDef[];
  /** Seconds between checks for missed schedules (and runs not heard). */
  check?: string;
  timeZone?: string;
}

/** A failed start (the database away) is tried again this often. */
const RETRY_MS = 10_000;

export = function register(RED: NodeAPI) {
  function PipelineAlertsNode(this: Node, def: PipelineAlertsDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    const status = new StatusReporter(node);
    const life = new Lifecycle(node);
    life.onClose(() => status.clear());
    let watch: Promise<AlertWatch> | undefined;
    let smtpDown = false;
    let settings: { rules: AlertRule[]; to: string[]; checkMs: number; timeZone?: string };
    try {
      settings = readSettings(config);
    } catch (err) {
      status.error(err instanceof ConfigError && err.status ? err.status : "invalid settings");
      // A node not configured yet (no recipient) says so in its status alone, as a fresh example should.
      if (!isSetupGap(err)) node.error(errorMessage(err));
      return;
    }

    // Its own relay on its own outbox queue (this node's id): alerts are stored in the outbox in the
    // transaction that claims them, and this relay, on any instance, delivers them once.
    async function open(): Promise<AlertWatch> {
      const smtp = configNode<SmtpProvider>(RED, config.smtp, "smtp-connection", "SMTP connection").settings();
      const db = await life.uses(configNode<DatabaseProvider>(RED, config.database, "postgres-database", "database")).database();
      if (life.isClosed) throw new ConfigError("the pipeline-alerts node was closed");
      const domain = smtp.sender.split("@").pop() || "node-red.local";
      const relay = new MailRelay({ outbox: new Outbox(db, node.id), transport: new SmtpTransport(smtp), messageIdDomain: domain });
      relay.on("warning", (m: string) => node.warn(m));
      relay.on("state", (state: RelayState) => {
        const down = !!state.serverDown;
        if (down !== smtpDown) ((smtpDown = down), void showState().catch(() => undefined));
      });
      relay.on("failed", (failed) => node.warn(`an alert mail could not be delivered to ${failed.to.join(", ")}: ${failed.error}`));
      const forget = life.onClose(() => relay.close());
      try {
        await relay.start();
        const alerts = new AlertWatch({ db, watcher: node.id, rules: settings.rules, to: settings.to, messageIdDomain: domain, timeZone: settings.timeZone, queued: (n) => relay.stored(n) });
        await alerts.start();
        const stop = await runLog(db).subscribe((record) => void life.work(decide(() => alerts.heard(record))));
        life.onClose(stop);
        return alerts;
      } catch (err) {
        forget();
        await relay.close(0);
        throw err;
      }
    }

    const watching = (): Promise<AlertWatch> => {
      watch ??= open().catch((err: unknown) => {
        watch = undefined;
        throw err;
      });
      return watch;
    };

    let warned = false;
    /** Runs one look at the database; its alerts go out of the node, its failure to the status (once to the log). */
    async function decide(look: () => Promise<Alert[]>): Promise<Alert[]> {
      if (life.isClosed) return [];
      try {
        const alerts = await look();
        for (const alert of alerts) node.send({ topic: alert.kind, payload: { ...alert, at: alert.at.toISOString() } });
        if (warned) node.warn("alerts are decided again");
        warned = false;
        await showState();
        return alerts;
      } catch (err) {
        if (life.isClosed) return [];
        status.error(asPipelineError(err).status);
        if (!warned && !isSetupGap(err)) node.warn(`alerts cannot be decided now (${errorMessage(err)}); trying again every ${Math.round(Math.min(RETRY_MS, settings.checkMs) / 1000)} s`);
        warned = true;
        return [];
      }
    }

    async function showState(): Promise<void> {
      const open = await (await watching()).openEpisodes();
      const episodes = open.length ? `${open.length} failing or missed` : "all well";
      if (smtpDown) status.warn(`SMTP down · ${episodes}`);
      else if (open.length) status.warn(episodes);
      else status.ready(episodes);
    }

    const check = () => decide(async () => (await watching()).check());
    void life.work(check());
    life.interval(() => void life.work(check()), settings.checkMs);

    handleInput(node, status, async (msg, send) => {
      if (msg.topic !== "check") throw new InputError('send msg.topic "check" to check every watched pipeline now');
      const alerts = await (await watching()).check();
      msg.payload = alerts.map((a) => ({ ...a, at: a.at.toISOString() }));
      await showState();
      send(msg);
    }, { life });
  }

  function readSettings(config: PipelineAlertsDef): { rules: AlertRule[]; to: string[]; checkMs: number; timeZone?: string } {
    const addresses = (text: string | undefined, what: string) => (text?.trim() ? addressList(text, what) : []);
    const to = addresses(config.to, "the alert recipients");
    const rules = (config.rules ?? []).map((r, i): AlertRule => {
      const scope = r.scope ?? "all";
      if (scope !== "all" && scope !== "node" && scope !== "pipeline") throw new ConfigError(`rule ${i + 1}: unknown scope "${scope}"`);
      if (scope !== "all" && !r.match?.trim()) throw new ConfigError(`rule ${i + 1}: name the ${scope === "node" ? "node" : "pipeline"} it watches`);
      const rule: AlertRule = {
        scope,
        match: (r.match ?? "").trim(),
        to: addresses(r.to, `rule ${i + 1}'s recipients`),
        everyMs: parseDuration(r.every, `rule ${i + 1}'s expected interval`),
        graceMs: parseDuration(r.grace, `rule ${i + 1}'s grace`) ?? 0,
      };
      if (!rule.to.length && !to.length) throw new ConfigError(`rule ${i + 1} has no recipient: set one there or in To`, { status: "missing recipient" });
      return rule;
    });
    const checkMs = Math.max(100, (parseDuration(config.check, "the check interval") ?? 60_000));
    const zone = config.timeZone?.trim();
    return { rules, to, checkMs, timeZone: zone ? ianaZone(zone) : undefined };
  }

  RED.nodes.registerType("pipeline-alerts", PipelineAlertsNode);
};
