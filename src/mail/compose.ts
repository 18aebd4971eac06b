import { DateTime } from "luxon";
import { InputError } from "../core/errors";
import type { AlertmanagerAlert, AlertmanagerNotification, GrafanaAlert, GrafanaNotification, UptimeKumaMonitor, UptimeKumaNotification } from "./types";

export type PayloadKind = "message" | "alertmanager" | "grafana" | "uptime-kuma" | "json" | "text";

/** A mail's subject, plain-text body and, for alerts, an HTML body, made from what a monitoring system posted. */
export interface MailContent {
  kind: PayloadKind;
  subject: string;
  text: string;
  html?: string;
}

export interface ComposeOptions {
  /** IANA zone in which times are shown; the Node-RED host's when absent. */
  timeZone?: string;
}

const MAX_SUBJECT = 200;
/** What one mail shows of the payload's text, all fields together; the rest is cut with a note. */
export const MAX_MAIL_CHARS = 1_000_000;
const KUMA_STATUS: Record<number, string> = { 0: "DOWN", 1: "UP", 2: "PENDING", 3: "MAINTENANCE" };

/**
 * Turns a posted body into one mail: the original `{ "message": … }` contract; an Alertmanager or
 * Grafana webhook (one mail per notification: subject from status and alert names, a block per
 * alert with every annotation, label, value, time and link); an Uptime Kuma notification (its
 * monitor and heartbeat); anything else pretty-printed, as the original relay did with every body.
 */
export function composeMail(body: unknown, defaultSubject: string, options: ComposeOptions = {}): MailContent {
  checkShape(body);
  const content = composeFrom(body, defaultSubject, options.timeZone || hostZone());
  // PostgreSQL cannot store NUL or a lone UTF-16 surrogate (JSON's "\ud800"): each is shown as
  // U+FFFD, so such a body is stored and sent, never refused as "down" and retried for ever.
  const mail: MailContent = { kind: content.kind, subject: storable(content.subject), text: storable(content.text) };
  if (content.html !== undefined) mail.html = storable(content.html);
  return mail;
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

function composeFrom(body: unknown, defaultSubject: string, zone: string): MailContent {
  if (isAlertNotification(body)) {
    if (!body.alerts.every(isObject)) throw new InputError("every alert in alerts must be an object");
    return render(alertDocument(body, zone));
  }
  if (isUptimeKuma(body)) return render(uptimeKumaDocument(body, zone));
  if (isObject(body) && typeof body.message === "string") {
    const { message, subject, ...rest } = body;
    const extra = Object.keys(rest).length ? `\n\n${JSON.stringify(rest, null, 4)}` : "";
    return { kind: "message", subject: oneLine(typeof subject === "string" && subject.trim() ? subject : defaultSubject), text: `${message}${extra}\n` };
  }
  if (typeof body === "string") return { kind: "text", subject: oneLine(defaultSubject), text: body.endsWith("\n") ? body : `${body}\n` };
  if (Buffer.isBuffer(body)) return composeFrom(body.toString("utf8"), defaultSubject, zone);
  return { kind: "json", subject: oneLine(defaultSubject), text: `${JSON.stringify(body ?? null, null, 4)}\n` };
}

function isAlertNotification(body: unknown): body is AlertmanagerNotification {
  return isObject(body) && Array.isArray(body.alerts) && typeof body.status === "string" && ("groupKey" in body || "receiver" in body || "version" in body);
}

function isGrafana(body: AlertmanagerNotification): body is GrafanaNotification {
  const b = body as AlertmanagerNotification & { orgId?: unknown; state?: unknown };
  return b.orgId !== undefined || b.state !== undefined || body.alerts.some((a) => "dashboardURL" in a || "valueString" in a || "silenceURL" in a);
}

function isUptimeKuma(body: unknown): body is UptimeKumaNotification {
  return isObject(body) && typeof body.msg === "string" && ("heartbeat" in body || "monitor" in body);
}

// ---- The document: what a mail shows, before it is written as text or HTML ----

/** One labelled value. `lines`: the value keeps its line breaks (an annotation, a message). */
interface Row {
  label: string;
  value: string;
  lines?: boolean;
}

/** One alert (or monitor): a heading, its state (for colour) and its rows. */
interface Block {
  heading: string;
  state: "firing" | "resolved" | "other";
  rows: Row[];
}

interface AlertDocument {
  kind: PayloadKind;
  subject: string;
  /** About the whole notification: sender, receiver, its own title and message. */
  rows: Row[];
  blocks: Block[];
  /** After the alerts: the sender's own rendering (Grafana's message), long and repeating them. */
  appendix?: Block;
  /** Said at the end: alerts the sender left out, or cut for size. */
  notes: string[];
}

function row(label: string, value: unknown, lines = false): Row[] {
  const text = lines ? multiLine(value) : field(value);
  return text ? [{ label, value: text, lines: lines && text.includes("\n") }] : [];
}

// ---- Alertmanager and Grafana ----

const ANNOTATION_LABELS: Record<string, string> = { summary: "Summary", message: "Message", description: "Description", runbook_url: "Runbook" };

function alertDocument(body: AlertmanagerNotification, zone: string): AlertDocument {
  const grafana = isGrafana(body);
  const alerts = body.alerts;
  const firing = alerts.filter((a) => a.status === "firing").length;
  const names = unique(alerts.map((a) => field(labelsOf(a).alertname)).filter(Boolean));
  const grouped = isObject(body.groupLabels) ? field(body.groupLabels.alertname) : "";
  if (!names.length && grouped) names.push(grouped);
  const status = field(body.status).toUpperCase();
  const subject = `[${status}${body.status === "firing" ? `:${firing}` : ""}] ${names.join(", ") || "alert"}`;
  const g = body as GrafanaNotification;
  const rows: Row[] = [
    ...row("Sent by", grafana ? "Grafana" : "Alertmanager"),
    ...(grafana ? [...row("Title", g.title), ...row("State", g.state)] : []),
    ...row("Receiver", body.receiver),
    ...row("Group", isObject(body.groupLabels) ? labelText(body.groupLabels) : ""),
    ...row(grafana ? "Grafana" : "Alertmanager", body.externalURL),
  ];
  const notes: string[] = [];
  const truncated = Number(body.truncatedAlerts);
  if (Number.isFinite(truncated) && truncated > 0) notes.push(`${truncated} more alert${truncated === 1 ? "" : "s"} left out by ${grafana ? "Grafana" : "Alertmanager"} (its limit of alerts per message).`);
  const message = grafana ? row("Message", g.message, true) : [];
  const appendix: Block | undefined = message.length ? { heading: "Grafana's message", state: "other", rows: message } : undefined;
  return { kind: grafana ? "grafana" : "alertmanager", subject: oneLine(subject), rows, blocks: alerts.map((a) => alertBlock(a, grafana, zone)), appendix, notes };
}

function alertBlock(alert: AlertmanagerAlert, grafana: boolean, zone: string): Block {
  const labels = labelsOf(alert);
  const name = field(labels.alertname) || "alert";
  const status = field(alert.status).toUpperCase() || "?";
  const severity = field(labels.severity);
  const annotations = isObject(alert.annotations) ? alert.annotations : {};
  const known = Object.keys(ANNOTATION_LABELS).filter((k) => k in annotations);
  const others = Object.keys(annotations).filter((k) => !(k in ANNOTATION_LABELS));
  const { alertname: _name, ...otherLabels } = labels;
  const a = alert as GrafanaAlert;
  const resolved = alert.status === "resolved" && validTime(alert.endsAt);
  return {
    heading: [status, name, severity].filter(Boolean).join(" · "),
    state: alert.status === "firing" ? "firing" : alert.status === "resolved" ? "resolved" : "other",
    rows: [
      ...row("Status", status),
      ...row("Severity", severity),
      ...row("Alert", name),
      ...[...known, ...others].flatMap((k) => row(ANNOTATION_LABELS[k] ?? field(k), annotations[k], true)),
      ...row("Labels", labelText(otherLabels), true),
      ...(grafana ? [...row("Values", isObject(a.values) ? pairs(a.values, ", ") : ""), ...row("Value string", a.valueString, true)] : []),
      ...row("Started", time(alert.startsAt, zone)),
      ...(resolved ? row("Ended", time(alert.endsAt, zone)) : []),
      ...row(grafana ? "Alert rule" : "Alert link", alert.generatorURL),
      ...(grafana ? [...row("Silence", a.silenceURL), ...row("Dashboard", a.dashboardURL), ...row("Panel", a.panelURL), ...row("Image", a.imageURL)] : []),
      ...row("Fingerprint", alert.fingerprint),
    ],
  };
}

/** A label set as sent, or none when it is not an object. */
function labelsOf(alert: AlertmanagerAlert): Record<string, unknown> {
  return isObject(alert.labels) ? alert.labels : {};
}

/** Labels one per line, `name = value`, each on one line of its own. */
function labelText(labels: Record<string, unknown>): string {
  return pairs(labels, "\n");
}

function pairs(values: Record<string, unknown>, separator: string): string {
  return Object.entries(values)
    .map(([k, v]) => `${field(k)}=${field(v)}`)
    .join(separator);
}

// ---- Uptime Kuma ----

function uptimeKumaDocument(body: UptimeKumaNotification, zone: string): AlertDocument {
  const monitor = isObject(body.monitor) ? (body.monitor as UptimeKumaMonitor) : undefined;
  const beat = isObject(body.heartbeat) ? body.heartbeat : undefined;
  const state = beat && typeof beat.status === "number" ? (KUMA_STATUS[beat.status] ?? `STATUS ${beat.status}`) : undefined;
  const name = field(monitor?.name);
  const subject = name ? `[${state ?? "NOTICE"}] ${name}` : `Uptime Kuma: ${body.msg}`;
  const rows: Row[] = [...row("Sent by", "Uptime Kuma"), ...row("Message", body.msg, true)];
  const blocks: Block[] = [];
  if (monitor || beat) {
    const at = kumaTime(beat?.time);
    const kumaZone = field(beat?.timezone);
    const kumaClock = field(beat?.localDateTime) && `${field(beat?.localDateTime)}${field(beat?.timezoneOffset) ? ` ${field(beat?.timezoneOffset)}` : ""}${kumaZone ? ` (${kumaZone})` : ""}`;
    const type = field(monitor?.type);
    blocks.push({
      heading: [state, name || "monitor"].filter(Boolean).join(" · "),
      state: beat?.status === 0 ? "firing" : beat?.status === 1 ? "resolved" : "other",
      rows: [
        ...row("Status", state),
        ...row("Monitor", name),
        ...(field(monitor?.pathName) && field(monitor?.pathName) !== name ? row("Group path", monitor?.pathName) : []),
        ...row("Type", type),
        ...(monitor ? kumaTarget(monitor) : []),
        ...row("Description", monitor?.description, true),
        ...row("Detail", beat?.msg, true),
        ...(typeof beat?.ping === "number" ? row("Response time", `${beat.ping} ms`) : []),
        ...row("Time", at === undefined ? "" : formatTime(at, zone)),
        // Kuma's own clock, when it differs from the mail's zone (or the UTC time is missing).
        ...(kumaClock && (at === undefined || kumaZone !== zone) ? row("Time at Kuma", kumaClock) : []),
        ...(typeof beat?.duration === "number" && beat.duration > 0 ? row("Since previous check", `${beat.duration} s`) : []),
        ...(typeof beat?.retries === "number" && beat.retries > 0 ? row("Retries", beat.retries) : []),
        ...row("Tags", Array.isArray(monitor?.tags) ? monitor!.tags.filter(isObject).map((t) => [field(t.name), field(t.value)].filter(Boolean).join(": ")).join(", ") : ""),
        ...row("Monitor ID", monitor?.id ?? beat?.monitorID),
      ],
    });
  }
  return { kind: "uptime-kuma", subject: oneLine(subject), rows, blocks, notes: [] };
}

/** What the monitor watches, as Kuma's monitor page shows it for its type. */
function kumaTarget(m: UptimeKumaMonitor): Row[] {
  const host = field(m.hostname);
  const port = typeof m.port === "number" || (typeof m.port === "string" && m.port) ? field(m.port) : "";
  const hostPort = host && port ? `${host}:${port}` : host;
  const url = field(m.url);
  const urlShown = url && !["https://", "http://"].includes(url) ? withoutPassword(url) : "";
  switch (field(m.type)) {
    case "push":
      return [];
    case "ping":
      return row("Address", host);
    case "port":
    case "gamedig":
    case "steam":
      return [...row("Address", hostPort), ...row("Game", m.game)];
    case "dns":
      return [
        ...row("Address", host),
        ...row("Record type", m.dns_resolve_type),
        ...row("Resolver", field(m.dns_resolve_server) && port ? `${field(m.dns_resolve_server)}:${port}` : m.dns_resolve_server),
        ...row("Last result", m.dns_last_result, true),
      ];
    case "docker":
      return row("Container", m.docker_container);
    case "mqtt":
      return [...row("Address", hostPort), ...row("Topic", m.mqttTopic)];
    case "keyword":
      return [...row("Address", urlShown), ...row(m.invertKeyword ? "Keyword (must be absent)" : "Keyword", m.keyword)];
    default:
      return urlShown ? row("Address", urlShown) : row("Address", hostPort);
  }
}

/** A URL with its password masked, as Kuma shows it. */
function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (!parsed.password) return url;
    parsed.password = "******";
    return parsed.toString();
  } catch {
    return url;
  }
}

/** Kuma's heartbeat time: UTC without a zone ("2026-11-22 12:00:00.123"), or ISO with one. */
function kumaTime(value: unknown): number | undefined {
  if (typeof value !== "string" || !value.trim()) return undefined;
  const text = value.trim().replace(" ", "T");
  const ms = Date.parse(/(Z|[+-]\d\d:?\d\d)$/i.test(text) ? text : `${text}Z`);
  return Number.isNaN(ms) ? undefined : ms;
}

// ---- Times ----

function hostZone(): string {
  return Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
}

function time(value: unknown, zone: string): string {
  if (!validTime(value)) return "";
  return formatTime(Date.parse(value as string), zone);
}

/** "2026-11-22 11:00:00 +01:00 (Europe/Brussels)": the wall clock, its offset and its zone. */
function formatTime(ms: number, zone: string): string {
  const at = DateTime.fromMillis(ms, { zone });
  return at.isValid ? `${at.toFormat("yyyy-MM-dd HH:mm:ss ZZ")} (${zone})` : new Date(ms).toISOString();
}

// Alertmanager sends Go's zero time for an alert that has not ended.
function validTime(value: unknown): boolean {
  return typeof value === "string" && !!value && !value.startsWith("0001-") && !Number.isNaN(Date.parse(value));
}

// ---- Writing the document as text and HTML ----

/**
 * Both parts from one document, within MAX_MAIL_CHARS of payload text: a value is cut where the
 * budget ends, and the alerts after it are counted in a note instead of shown.
 */
function render(doc: AlertDocument): MailContent {
  let budget = MAX_MAIL_CHARS;
  let cut = 0;
  const take = (rows: Row[]): Row[] =>
    rows.map((r) => {
      if (r.value.length <= budget) {
        budget -= r.value.length;
        return r;
      }
      cut += r.value.length - budget;
      const value = `${r.value.slice(0, budget)}…`;
      budget = 0;
      return { ...r, value };
    });
  const rows = take(doc.rows);
  const blocks: Block[] = [];
  let left = 0;
  for (const block of doc.blocks) {
    if (budget <= 0) left++;
    else blocks.push({ ...block, rows: take(block.rows) });
  }
  const appendix = doc.appendix && budget > 0 ? { ...doc.appendix, rows: take(doc.appendix.rows) } : undefined;
  if (appendix) blocks.push(appendix);
  const notes = [...doc.notes];
  if (cut) notes.push(`${cut} characters were cut: a mail shows at most ${MAX_MAIL_CHARS} characters of the notification.`);
  if (left) notes.push(`${left} more alert${left === 1 ? " is" : "s are"} not shown: a mail shows at most ${MAX_MAIL_CHARS} characters of the notification.`);
  return { kind: doc.kind, subject: doc.subject, text: textPart(doc.subject, rows, blocks, notes), html: htmlPart(doc.subject, rows, blocks, notes) };
}

function textPart(subject: string, rows: Row[], blocks: Block[], notes: string[]): string {
  const out = [subject, "", ...rows.map(textRow)];
  for (const block of blocks) out.push("", `== ${block.heading} ==`, ...block.rows.map(textRow));
  if (notes.length) out.push("", "== Notes ==", ...notes);
  return `${out.join("\n")}\n`;
}

/** `Label: value`, or the label alone with the value's lines indented below it, so none can pass for a line of its own. */
function textRow(r: Row): string {
  if (!r.lines) return `${r.label}: ${r.value}`;
  return `${r.label}:\n${r.value
    .split("\n")
    .map((l) => `  ${l}`)
    .join("\n")}`;
}

const COLOURS: Record<Block["state"], string> = { firing: "#c62828", resolved: "#2e7d32", other: "#555555" };
const FONT = "font-family:Arial,Helvetica,sans-serif;font-size:14px;line-height:1.4;color:#222222";

/**
 * Tables with inline styles only, as Outlook (Word's renderer) and Gmail (no <style> blocks in
 * every client) both show them. Every value is escaped; only http and https links are made.
 */
function htmlPart(subject: string, rows: Row[], blocks: Block[], notes: string[]): string {
  const out = [
    `<!DOCTYPE html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width"><title>${escapeHtml(subject)}</title></head>`,
    `<body style="margin:0;padding:16px;${FONT}">`,
    `<h2 style="margin:0 0 12px 0;${FONT};font-size:18px">${escapeHtml(subject)}</h2>`,
    htmlTable(rows, "#dddddd"),
  ];
  for (const block of blocks) {
    const colour = COLOURS[block.state];
    out.push(
      `<h3 style="margin:20px 0 6px 0;font-size:16px;font-family:Arial,Helvetica,sans-serif;color:${colour}">${escapeHtml(block.heading)}</h3>`,
      htmlTable(block.rows, colour),
    );
  }
  for (const note of notes) out.push(`<p style="margin:16px 0 0 0;font-style:italic;${FONT}">${escapeHtml(note)}</p>`);
  out.push("</body></html>");
  return `${out.join("\n")}\n`;
}

function htmlTable(rows: Row[], border: string): string {
  if (!rows.length) return "";
  const cells = rows.map(
    (r) =>
      `<tr><th align="left" valign="top" width="150" style="width:150px;padding:4px 12px 4px 8px;border-bottom:1px solid #eeeeee;font-weight:bold;${FONT}">${escapeHtml(r.label)}</th>` +
      `<td valign="top" style="padding:4px 8px;border-bottom:1px solid #eeeeee;word-break:break-word;overflow-wrap:anywhere;${FONT}">${htmlValue(r.value)}</td></tr>`,
  );
  return `<table role="presentation" cellpadding="0" cellspacing="0" border="0" width="100%" style="border-collapse:collapse;table-layout:fixed;border-left:4px solid ${border};max-width:900px">\n${cells.join("\n")}\n</table>`;
}

/** Line breaks become <br>; every http(s) URL in the text becomes a link, any other scheme stays text. */
function htmlValue(value: string): string {
  return value.split("\n").map(htmlLine).join("<br>\n");
}

const URL_IN_TEXT = /https?:\/\/[^\s<>"']+/gi;

function htmlLine(line: string): string {
  let out = "";
  let last = 0;
  for (const match of line.matchAll(URL_IN_TEXT)) {
    const raw = match[0].replace(/[.,;:!?)\]]+$/, ""); // the sentence's punctuation, not the link's
    const href = webLink(raw);
    out += escapeHtml(line.slice(last, match.index));
    out += href ? `<a href="${escapeHtml(href)}" style="color:#1a5fb4">${escapeHtml(raw)}</a>` : escapeHtml(raw);
    last = match.index! + raw.length;
  }
  return keepSpaces(out + escapeHtml(line.slice(last)));
}

/** Indentation and runs of spaces as the sender wrote them (HTML would fold them into one). */
function keepSpaces(html: string): string {
  return html
    .replace(/\t/g, "    ")
    .replace(/^ +/, (m) => "&#160;".repeat(m.length))
    .replace(/ {2,}/g, (m) => ` ${"&#160;".repeat(m.length - 1)}`);
}

function webLink(value: string): string | undefined {
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : undefined;
  } catch {
    return undefined;
  }
}

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

// ---- Values from the body ----

/**
 * A value from the body as text on one line: a CR or LF in a label or a name must not start a
 * line of its own in the mail. Objects and arrays are not shown.
 */
function field(value: unknown): string {
  if (typeof value === "string") return oneLine(value, Infinity);
  if (typeof value === "number" || typeof value === "boolean") return String(value);
  return "";
}

/** Text whose lines are kept (annotations, messages): every kind of line break becomes LF. */
function multiLine(value: unknown): string {
  if (typeof value !== "string") return field(value);
  return withoutControls(value.replace(/\r\n|[\r\n\v\f\u0085\u2028\u2029]/g, "\n"))
    .replace(/[ \t]+$/gm, "")
    .replace(/^\n+|\n+$/g, "");
}

/** Control characters other than tab and line feed (a terminal's escapes) shown as U+FFFD. */
function withoutControls(text: string): string {
  return text.replace(/[\u0001-\u0008\u000e-\u001f\u007f-\u0084\u0086-\u009f]/g, "\uFFFD");
}

function oneLine(text: string, max = MAX_SUBJECT): string {
  // Every line break Unicode knows, not only CR and LF: a mail reader may honour them.
  const line = withoutControls(text.replace(/[\r\n\t\v\f\u0085\u2028\u2029]+/g, " ")).trim();
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

function unique<T>(items: T[]): T[] {
  return [...new Set(items)];
}

function isObject(value: unknown): value is Record<string, unknown> {
  return !!value && typeof value === "object" && !Array.isArray(value) && !Buffer.isBuffer(value);
}
