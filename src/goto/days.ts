import { DateTime, IANAZone } from "luxon";
import { ConfigError, InputError } from "../core/errors";

/** A calendar day in a time zone and the instants it spans: 23 or 25 hours on a clock change. */
export interface CalendarDay {
  /** `2026-11-22` */
  date: string;
  /** Local midnight, inclusive. */
  start: Date;
  /** The next day's local midnight, exclusive. */
  end: Date;
}

/** Which days to collect: relative to today as the original did, or explicit dates (inclusive). */
export interface DayRange {
  /** The first day relative to today: -1 is yesterday. */
  startDay?: number;
  /** How many days, counted back from `startDay` (the original's DAYS_TO_RETRIEVE). */
  days?: number;
  from?: string;
  to?: string;
}

/** GoTo keeps call reports for 13 months; a longer range is a mistake. */
export const MAX_DAYS = 400;

/** The IANA zone to use: the given one, or the Node-RED host's own when blank. */
export function timeZone(zone: string | undefined): string {
  const name = (zone ?? "").trim() || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  if (!IANAZone.isValidZone(name)) throw new ConfigError(`"${name}" is not an IANA time zone (such as Europe/Brussels or UTC)`);
  return name;
}

/** The day `date` (yyyy-MM-dd) in `zone`, from its local midnight to the next one. */
export function calendarDay(date: string, zone: string): CalendarDay {
  const start = parseDate(date, zone, "date");
  return { date: start.toISODate()!, start: start.toJSDate(), end: start.plus({ days: 1 }).startOf("day").toJSDate() };
}

/**
 * The days a range names, oldest first. `startDay`/`days` count like the original's START_DAY and
 * DAYS_TO_RETRIEVE: `{ startDay: -1, days: 7 }` is yesterday and the six days before it.
 */
export function daysOfRange(range: DayRange, zone: string, now: number = Date.now()): string[] {
  const today = DateTime.fromMillis(now, { zone }).startOf("day");
  let first: DateTime;
  let last: DateTime;
  if (range.from !== undefined || range.to !== undefined) {
    if (range.from === undefined) throw new InputError("msg.payload.to needs a msg.payload.from");
    first = parseDate(range.from, zone, "msg.payload.from");
    last = range.to === undefined ? first : parseDate(range.to, zone, "msg.payload.to");
    if (last < first) throw new InputError(`msg.payload.to (${range.to}) is before msg.payload.from (${range.from})`);
  } else {
    const startDay = range.startDay ?? -1;
    const days = range.days ?? 1;
    if (!Number.isInteger(startDay) || startDay > 0) throw new InputError(`startDay must be 0 (today), -1 (yesterday) or earlier, not ${JSON.stringify(range.startDay)}`);
    if (!Number.isInteger(days) || days < 1) throw new InputError(`days must be a whole number of at least 1, not ${JSON.stringify(range.days)}`);
    last = today.plus({ days: startDay });
    first = last.minus({ days: days - 1 });
  }
  if (first > today) throw new InputError(`${first.toISODate()} has not begun yet in ${zone}`);
  const count = Math.round(last.diff(first, "days").days) + 1;
  if (count > MAX_DAYS) throw new InputError(`${count} days is more than the ${MAX_DAYS} GoTo keeps: ask for fewer`);
  const dates: string[] = [];
  for (let d = first; d <= last; d = d.plus({ days: 1 })) dates.push(d.toISODate()!);
  return dates;
}

function parseDate(value: unknown, zone: string, what: string): DateTime {
  const parsed = typeof value === "string" && /^\d{4}-\d{2}-\d{2}$/.test(value) ? DateTime.fromISO(value, { zone }) : undefined;
  if (!parsed?.isValid) throw new InputError(`${what} must be a date such as 2026-11-22, not ${JSON.stringify(value)}`);
  // A zone whose clocks jump at midnight has no 00:00 that day; luxon moves to the first instant there is.
  return parsed.startOf("day");
}
