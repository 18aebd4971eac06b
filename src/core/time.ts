// Wall-clock times in named zones, with Node's own ICU: what a "day in Europe/Brussels" or a
// "scheduled reply from 09:00 Romance Standard Time" is as an instant.
import { findIana } from "windows-iana";

/** An IANA zone for an IANA or Windows zone name, or undefined when neither is known. */
export function ianaZone(name: string): string | undefined {
  if (!name) return undefined;
  if (isIanaZone(name)) return name;
  const mapped = findIana(name)?.[0];
  return mapped && isIanaZone(mapped) ? mapped : undefined;
}

function isIanaZone(name: string): boolean {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: name });
    return true;
  } catch {
    return false;
  }
}

/** The zone's offset from UTC at `instant`, in milliseconds (positive east of Greenwich). */
export function zoneOffset(zone: string, instant: number): number {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(new Date(instant));
  const get = (type: string) => Number(parts.find((p) => p.type === type)?.value);
  const asUtc = Date.UTC(get("year"), get("month") - 1, get("day"), get("hour"), get("minute"), get("second"));
  return asUtc - Math.floor(instant / 1000) * 1000;
}

/**
 * The instant at which the wall clock in `zone` shows `local` (Y-M-D h:m:s, seconds may have
 * fractions). A time skipped by a daylight-saving change is read with the offset from before the
 * change (so 02:30 on a spring-forward night is 03:30 after it); a repeated time is its first
 * occurrence.
 */
export function zonedTimeToInstant(local: string, zone: string): number {
  const match = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?$/.exec(local.trim());
  if (!match) throw new RangeError(`not a local date and time: ${local}`);
  const [, y, mo, d, h = "0", mi = "0", s = "0", frac = ""] = match;
  const wall = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) + Math.round(Number(`0${frac}`) * 1000);
  // The offsets a day before and a day after: around a daylight-saving change they differ.
  const day = 86_400_000;
  const before = wall - zoneOffset(zone, wall - day);
  const after = wall - zoneOffset(zone, wall + day);
  const shows = (t: number) => t + zoneOffset(zone, t) === wall;
  const valid = [before, after].filter(shows);
  if (valid.length > 0) return Math.min(...valid); // a repeated time: its first occurrence
  return before; // a skipped time: read with the offset from before the change
}

/** `instant` as the wall clock in `zone` shows it: "2026-11-23 10:02:03". */
export function formatInZone(instant: number, zone: string): string {
  const parts = new Intl.DateTimeFormat("en-US", {
    timeZone: zone,
    hourCycle: "h23",
    year: "numeric",
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  }).formatToParts(new Date(instant));
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  return `${get("year")}-${get("month")}-${get("day")} ${get("hour")}:${get("minute")}:${get("second")}`;
}

/** A length of time as H:MM:SS, hours running past 24 (no day is dropped). */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  return `${Math.floor(s / 3600)}:${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}
