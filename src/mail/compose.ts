import { InputError } from "../core/errors";
import type { AlertmanagerAlert, AlertmanagerNotification, GrafanaAlert, UptimeKumaNotification } from "./types";

export type PayloadKind = "message" | "alertmanager" | "grafana" | "uptime-kuma" | "json" | "text";

/** A mail's subject and plain-text body, made from what a monitoring system posted. */
export interface MailContent {
  kind: PayloadKind;
  subject: string;
  text: string;
}

const MAX_SUBJECT = 200;
const KUMA_STATUS: Record<number, string> = { 0: "DOWN", 1: "UP", 2: "PENDING", 3: "MAINTENANCE" };

/**
 * Turns a posted body into one mail: the original `{ "message": … }` contract; an Alertmanager or
 * Grafana webhook (one mail per notification: subject from status and alert names, one line per
 * alert); an Uptime Kuma notification (its text is in `msg`); anything else pretty-printed, as the
 * original relay did with every body.
 */
export function composeMail(body: unknown, defaultSubject: string): MailContent {
  checkShape(body);
  const content = composeFrom(body, defaultSubject);
  // PostgreSQL cannot store NUL or a lone UTF-16 surrogate (JSON's "\ud800"): each is shown as
  // U+FFFD, so such a body is stored and sent, never refused as "down" and retried for ever.
  return { kind: content.kind, subject: storable(content.subject), text: storable(content.text) };
}

/** How deep a body may nest: monitoring systems send three or four levels. */
export const MAX_DEPTH = 64;

/** Refuses (InputError, a 400) a body nested deeper than MAX_DEPTH, walked without recursion. */
function checkShape(body: unknown): void {
  const stack: Array<[unknown, number]> = [[body, 0]];
  while (stack.length) {
    const [value, depth] = stack.pop()!;
    if (!value || typeof value !== "object" || Buffer.isBuffer(value)) continue;
    if (depth >= MAX_DEPTH) throw new InputError(`the body nests more than ${MAX_DEPTH} levels deep`);
    for (const child of Array.isArray(value) ? value : Object.values(value)) {
      if (child && typeof child === "object") stack.push([child, depth + 1]);
    }
  }
}

const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

function storable(text: string): string {
  return text.replace(UNSTORABLE, "\uFFFD");
}

function composeFrom(body: unknown, defaultSubject: string): MailContent {
  if (isAlertNotification(body)) {
    if (!body.alerts.every(isObject)) throw new InputError("every alert in alerts must be an object");
    return alertMail(body);
  }
  if (isUptimeKuma(body)) return uptimeKumaMail(body);
  if (isObject(body) && typeof body.message === "string") {
    const { message, subject, ...rest } = body;
    const extra = Object.keys(rest).length ? `\n\n${JSON.stringify(rest, null, 4)}` : "";
    return { kind: "message", subject: oneLine(typeof subject === "string" && subject.trim() ? subject : defaultSubject), text: `${message}${extra}\n` };
  }
  if (typeof body === "string") return { kind: "text", subject: oneLine(defaultSubject), text: body.endsWith("\n") ? body : `${body}\n` };
  if (Buffer.isBuffer(body)) return composeMail(body.toString("utf8"), defaultSubject);
  return { kind: "json", subject: oneLine(defaultSubject), text: `${JSON.stringify(body ?? null, null, 4)}\n` };
}

function isAlertNotification(body: unknown): body is AlertmanagerNotification {
  return isObject(body) && Array.isArray(body.alerts) && typeof body.status === "string" && ("groupKey" in body || "receiver" in body || "version" in body);
}

function isGrafana(body: AlertmanagerNotification): boolean {
  const b = body as AlertmanagerNotification & { orgId?: unknown; state?: unknown };
  return b.orgId !== undefined || b.state !== undefined || body.alerts.some((a) => "dashboardURL" in a || "valueString" in a || "silenceURL" in a);
}

function isUptimeKuma(body: unknown): body is UptimeKumaNotification {
  return isObject(body) && typeof body.msg === "string" && ("heartbeat" in body || "monitor" in body);
}

function alertMail(body: AlertmanagerNotification): MailContent {
  const grafana = isGrafana(body);
  const alerts = body.alerts;
  const firing = alerts.filter((a) => a.status === "firing").length;
  const names = unique(alerts.map((a) => field(labelsOf(a).alertname)).filter(Boolean));
  const grouped = isObject(body.groupLabels) ? field(body.groupLabels.alertname) : "";
  if (!names.length && grouped) names.push(grouped);
  const status = field(body.status).toUpperCase();
  const subject = `[${status}${body.status === "firing" ? `:${firing}` : ""}] ${names.join(", ") || "alert"}`;
  const lines = alerts.map((a) => alertLine(a, grafana));
  if (body.truncatedAlerts) lines.push(`… and ${field(body.truncatedAlerts)} more (truncated by the sender)`);
  const links = alerts
    .map((a) => {
      const url = field((a as GrafanaAlert).dashboardURL) || field((a as GrafanaAlert).panelURL) || field(a.generatorURL);
      return url ? `${field(labelsOf(a).alertname) || "alert"}: ${url}` : "";
    })
    .filter(Boolean);
  const receiver = field(body.receiver);
  const external = field(body.externalURL);
  const footer = [`${grafana ? "Grafana" : "Alertmanager"}${receiver ? ` (receiver ${receiver})` : ""}${external ? `: ${external}` : ""}`, ...links];
  return { kind: grafana ? "grafana" : "alertmanager", subject: oneLine(subject), text: `${lines.join("\n")}\n\n${footer.join("\n")}\n` };
}

function alertLine(alert: AlertmanagerAlert, grafana: boolean): string {
  const { alertname, ...labels } = labelsOf(alert);
  const labelText = Object.entries(labels)
    .map(([k, v]) => `${field(k)}=${field(v)}`)
    .join(" ");
  const annotations = isObject(alert.annotations) ? alert.annotations : {};
  const about = field(annotations.summary) || field(annotations.description);
  const since = alert.status === "resolved" && validTime(alert.endsAt) ? `${time(alert.startsAt)} → ${time(alert.endsAt)}` : `since ${time(alert.startsAt)}`;
  const values = grafana ? valuesText(alert as GrafanaAlert) : "";
  return [field(alert.status).toUpperCase(), field(alertname) || "alert", labelText, about ? `— ${about}` : "", values, `(${since})`].filter(Boolean).join(" ");
}

/** A label set as sent, or none when it is not an object. */
function labelsOf(alert: AlertmanagerAlert): Record<string, unknown> {
  return isObject(alert.labels) ? alert.labels : {};
}

/**
 * A value from the body as text on one line: a CR or LF in a label or a name must not start a
 * line of its own in the mail. Objects and arrays are not shown.
 */
function field(value: unknown): string {
  if (typeof value === "string") return oneLine(value);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return "";
}

function valuesText(alert: GrafanaAlert): string {
  if (isObject(alert.values)) {
    const pairs = Object.entries(alert.values).map(([k, v]) => `${field(k)}=${field(v)}`);
    if (pairs.length) return `[${pairs.join(", ")}]`;
  }
  return "";
}

function uptimeKumaMail(body: UptimeKumaNotification): MailContent {
  const monitor = body.monitor ?? undefined;
  const beat = body.heartbeat ?? undefined;
  const state = beat && typeof beat.status === "number" ? (KUMA_STATUS[beat.status] ?? `STATUS ${beat.status}`) : undefined;
  const subject = monitor?.name ? `[${state ?? "NOTICE"}] ${monitor.name}` : `Uptime Kuma: ${body.msg}`;
  const where = monitor ? monitor.url || monitor.hostname || "" : "";
  const lines = [body.msg];
  if (monitor?.name) lines.push("", `Monitor: ${monitor.name}${where ? ` (${where})` : ""}`);
  if (beat) {
    if (beat.time) lines.push(`Time: ${beat.time}${beat.timezone ? ` (${beat.timezone})` : ""}`);
    if (beat.msg) lines.push(`Detail: ${beat.msg}`);
    if (typeof beat.ping === "number") lines.push(`Ping: ${beat.ping} ms`);
  }
  return { kind: "uptime-kuma", subject: oneLine(subject), text: `${lines.join("\n")}\n` };
}

function time(value: unknown): string {
  if (typeof value !== "string" || !validTime(value)) return "?";
  return new Date(value!).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z").replace(/:00Z$/, "Z");
}

// Alertmanager sends Go's zero time for an alert that has not ended.
function validTime(value: unknown): boolean {
  return typeof value === "string" && !!value && !value.startsWith("0001-") && !Number.isNaN(Date.parse(value));
}

function oneLine(text: string): string {
  // Every line break Unicode knows, not only CR and LF: a mail reader may honour them.
  const line = text.replace(/[\r\n\t\v\f\u0085\u2028\u2029]+/g, " ").trim();
  return line.length > MAX_SUBJECT ? `${line.slice(0, MAX_SUBJECT - 1)}…` : line;
}

function unique<T>(items: T[]): T[] {
  return [...new Set(items)];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return !!value && typeof value === "object" && !Array.isArray(value) && !Buffer.isBuffer(value);
}
