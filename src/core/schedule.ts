/**
 * When a pipeline node runs next, as far as its flow tells: the inject nodes upstream of it
 * (a cron time or a repeat interval), or its own polling interval (the out-of-office monitor).
 * A node only a request or an event starts (HTTP in, a mail, a board tick) runs on demand.
 */

/** How a node is started, as the health page says it. */
export interface NodeSchedule {
  /** `cron`: an inject's crontab; `interval`: a repeat or polling interval; `on demand`: nothing runs it by itself. */
  kind: "cron" | "interval" | "on demand";
  /** The crontab or interval, as a user reads it ("30 00 * * *", "every 900 s"); null on demand. */
  text: string | null;
  /** The next start the schedule gives (an interval: the last start plus the interval); null when none can be known. */
  nextRunAt: Date | null;
}

/** A node of the deployed flows, as `RED.nodes.eachNode` gives it. */
export interface FlowNodeConfig {
  id: string;
  type: string;
  wires?: string[][];
  [key: string]: unknown;
}

/** Nodes upstream to look through for a trigger (a change or function node between an inject and the pipeline). */
const MAX_HOPS = 4;

/** The schedule of node `nodeId` in `flows`; `lastStartedAt` sets the next start of an interval. */
export function scheduleOf(nodeId: string, flows: readonly FlowNodeConfig[], lastStartedAt: Date | null, now = new Date()): NodeSchedule | null {
  const byId = new Map(flows.map((n) => [n.id, n]));
  const self = byId.get(nodeId);
  if (!self) return null;
  const schedules: NodeSchedule[] = [];
  const interval = Number(self.interval);
  if (self.type === "graph-ooo-status") {
    const seconds = Math.max(15, Number.isFinite(interval) && interval > 0 ? interval : 60);
    schedules.push(every(seconds, lastStartedAt, now));
  }
  const upstream = new Map<string, string[]>();
  for (const n of flows) for (const target of (n.wires ?? []).flat()) upstream.set(target, [...(upstream.get(target) ?? []), n.id]);
  const seen = new Set([nodeId]);
  let frontier = [nodeId];
  for (let hop = 0; hop < MAX_HOPS && frontier.length; hop++) {
    const next: string[] = [];
    for (const id of frontier) {
      for (const from of upstream.get(id) ?? []) {
        if (seen.has(from)) continue;
        seen.add(from);
        const n = byId.get(from);
        if (!n || n.d === true) continue;
        if (n.type === "inject") {
          const s = injectSchedule(n, lastStartedAt, now);
          if (s) schedules.push(s);
        } else if (!["http in", "catch", "status", "complete", "link in"].includes(n.type) && !n.type.startsWith("ui-")) next.push(from);
      }
    }
    frontier = next;
  }
  if (!schedules.length) return { kind: "on demand", text: null, nextRunAt: null };
  // The soonest start wins; a schedule whose next start is unknown only when no other is known.
  return schedules.sort((a, b) => (a.nextRunAt?.getTime() ?? Infinity) - (b.nextRunAt?.getTime() ?? Infinity))[0]!;
}

function injectSchedule(n: FlowNodeConfig, lastStartedAt: Date | null, now: Date): NodeSchedule | null {
  const crontab = typeof n.crontab === "string" ? n.crontab.trim() : "";
  if (crontab) return { kind: "cron", text: crontab, nextRunAt: nextCronTime(crontab, now) };
  const repeat = Number(n.repeat);
  if (n.repeat !== "" && Number.isFinite(repeat) && repeat > 0) return every(repeat, lastStartedAt, now);
  return null;
}

function every(seconds: number, lastStartedAt: Date | null, now: Date): NodeSchedule {
  // The timer started at deploy, which is not recorded: the last start plus the interval, or now when that has passed.
  const next = lastStartedAt ? new Date(lastStartedAt.getTime() + seconds * 1000) : null;
  return { kind: "interval", text: `every ${seconds} s`, nextRunAt: next && next > now ? next : next ? now : null };
}

const NAMES: Record<string, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6, jan: 1, feb: 2, mar: 3, apr: 4, may: 5, jun: 6, jul: 7, aug: 8, sep: 9, oct: 10, nov: 11, dec: 12 };

/** The values one cron field allows, or null when it is not one this reads. */
function field(text: string, min: number, max: number): Set<number> | null {
  const values = new Set<number>();
  const value = (s: string) => (s in NAMES ? NAMES[s]! : /^\d+$/.test(s) ? Number(s) : NaN);
  for (const part of text.toLowerCase().split(",")) {
    const [base = "", stepText, extra] = part.split("/");
    if (extra !== undefined || (stepText !== undefined && !/^\d+$/.test(stepText))) return null;
    const step = stepText === undefined ? 1 : Number(stepText);
    const [a = "", b, more] = base.split("-");
    if (more !== undefined) return null;
    const whole = base === "*" || base === "?";
    const from = whole ? min : value(a);
    const to = whole ? max : b !== undefined ? value(b) : stepText !== undefined ? max : from;
    if (![from, to].every((v) => Number.isInteger(v) && v >= min && v <= max) || step < 1) return null;
    for (let v = from; v <= to; v += step) values.add(v);
  }
  return values;
}

/**
 * The next time after `from` that a crontab (five fields, or six with seconds first, as the inject
 * node writes them) matches, in this process's time zone as the inject node runs it; null when it
 * cannot be read or matches nothing within a year.
 */
export function nextCronTime(crontab: string, from: Date): Date | null {
  let parts = crontab.trim().split(/\s+/);
  if (parts.length === 6) parts = parts.slice(1);
  if (parts.length !== 5) return null;
  const [minutes, hours, days, months, weekdays] = [field(parts[0]!, 0, 59), field(parts[1]!, 0, 23), field(parts[2]!, 1, 31), field(parts[3]!, 1, 12), field(parts[4]!, 0, 7)];
  if (!minutes || !hours || !days || !months || !weekdays) return null;
  if (weekdays.has(7)) weekdays.add(0);
  // As cron: when both day fields are restricted, either may match.
  const anyDay = parts[2] === "*" || parts[2] === "?";
  const anyWeekday = parts[4] === "*" || parts[4] === "?";
  const dayMatches = (t: Date) =>
    anyDay && anyWeekday ? true : anyDay ? weekdays.has(t.getDay()) : anyWeekday ? days.has(t.getDate()) : days.has(t.getDate()) || weekdays.has(t.getDay());
  const t = new Date(from.getTime());
  t.setSeconds(0, 0);
  t.setMinutes(t.getMinutes() + 1);
  const limit = from.getTime() + 366 * 86400_000;
  while (t.getTime() <= limit) {
    if (!months.has(t.getMonth() + 1)) {
      t.setMonth(t.getMonth() + 1, 1);
      t.setHours(0, 0, 0, 0);
    } else if (!dayMatches(t)) {
      t.setDate(t.getDate() + 1);
      t.setHours(0, 0, 0, 0);
    } else if (!hours.has(t.getHours())) {
      t.setHours(t.getHours() + 1, 0, 0, 0);
    } else if (!minutes.has(t.getMinutes())) {
      t.setMinutes(t.getMinutes() + 1, 0, 0);
    } else return t;
  }
  return null;
}
