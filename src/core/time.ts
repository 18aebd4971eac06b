// Wall-clock times in named zones: what a "day in Europe/Brussels" or a "scheduled reply from
// 09:00 Romance Standard Time" is as an instant.
import { DateTime, IANAZone } from "luxon";
import { findIana } from "windows-iana";

/** An IANA zone for an IANA or Windows zone name, or undefined when neither is known. */
export function ianaZone(name: string): string | undefined {
  if (!name) return undefined;
  if (IANAZone.isValidZone(name)) return name;
  const mapped = findIana(name)?.[0];
  return mapped && IANAZone.isValidZone(mapped) ? mapped : undefined;
}

/**
 * The instant at which the wall clock in `zone` shows `local` (an ISO date and time without an
 * offset; fractions of a second allowed). A time skipped by a daylight-saving change moves forward
 * by the size of the gap (02:30 on a spring-forward night is 03:30 after it); a time the autumn
 * change repeats is read with the offset after the change (luxon's reading).
 */
export function zonedTimeToInstant(local: string, zone: string): number {
  const at = DateTime.fromISO(local.trim().replace(" ", "T"), { zone });
  if (!at.isValid) throw new RangeError(`not a local date and time in ${zone}: ${local}`);
  return at.toMillis();
}

/** `instant` as the wall clock in `zone` shows it: "2026-11-23 10:02:03". */
export function formatInZone(instant: number, zone: string): string {
  return DateTime.fromMillis(instant, { zone }).toFormat("yyyy-MM-dd HH:mm:ss");
}

/**
 * Milliseconds as H:MM:SS with hours running past 24 (no day is dropped), as the original
 * scripts wrote durations (`0:01:23`). Empty for no value.
 */
export function formatDuration(ms: number | null | undefined): string {
  if (typeof ms !== "number" || !Number.isFinite(ms) || ms < 0) return "";
  const total = Math.floor(ms / 1000);
  return `${Math.floor(total / 3600)}:${String(Math.floor((total % 3600) / 60)).padStart(2, "0")}:${String(total % 60).padStart(2, "0")}`;
}
