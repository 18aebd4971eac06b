import { DateTime } from "luxon";
import { ConfigError, InputError } from "../core/errors";

/**
 * File names from a template. Tokens:
 *   {yyyy} year, {MM} month, {dd} day, {date} yyyy-MM-dd,
 *   {ww} ISO week number (01–53), {GGGG} ISO week-based year,
 *   {filename} msg.filename.
 * In a template with {ww} and neither {MM}, {dd} nor {date}, {yyyy} is the ISO week-based year as
 * well, so `audit/{yyyy}/{yyyy}-W{ww}.csv` never splits a week across two years' files.
 */
const TOKENS = new Set(["yyyy", "MM", "dd", "date", "ww", "GGGG", "filename"]);
const TOKEN = /\{([^{}]*)\}/g;

export interface PathValues {
  /** The day the file is for, in the configured zone. */
  day: DateTime;
  filename?: string;
}

/** Checks a template once, when a node starts: unknown tokens are a setup mistake. */
export function checkTemplate(template: string): void {
  if (!template.trim()) throw new ConfigError("the file path is empty");
  for (const [, name] of template.matchAll(TOKEN)) {
    if (!TOKENS.has(name!)) throw new ConfigError(`the file path has an unknown token {${name}}: use {yyyy}, {MM}, {dd}, {date}, {ww}, {GGGG} or {filename}`);
  }
}

export function renderPath(template: string, values: PathValues): string {
  const weekly = template.includes("{ww}") && !/\{(MM|dd|date)\}/.test(template);
  const { day } = values;
  const rendered = template.replace(TOKEN, (_m, name: string) => {
    switch (name) {
      case "yyyy":
        return weekly ? day.toFormat("kkkk") : day.toFormat("yyyy");
      case "MM":
        return day.toFormat("MM");
      case "dd":
        return day.toFormat("dd");
      case "date":
        return day.toFormat("yyyy-MM-dd");
      case "ww":
        return day.toFormat("WW");
      case "GGGG":
        return day.toFormat("kkkk");
      case "filename":
        if (!values.filename) throw new InputError("the file path uses {filename} but the message has no msg.filename");
        return values.filename;
      default:
        throw new ConfigError(`unknown token {${name}} in the file path`);
    }
  });
  return safeRelativePath(rendered);
}

/** A relative path of plain segments: no `..`, no `.`, no empty segment, no leading slash. */
export function safeRelativePath(name: string): string {
  const segments = name.replace(/\\/g, "/").split("/");
  if (segments.some((s) => s === "" || s === "." || s === ".." || /[\u0000-\u001f]/.test(s))) {
    throw new InputError(`"${name}" is not a usable file path: it must be relative, with no empty, "." or ".." parts`);
  }
  if (name.length > 1024) throw new InputError("the file path is longer than the 1,024 characters a blob name may have");
  return segments.join("/");
}

/**
 * The day a message's file is for, in the writer's zone: `msg.date` as a date (2026-11-22), an
 * ISO timestamp, epoch milliseconds or a Date; now when it has none.
 */
export function dayOf(date: unknown, zone: string, now: number = Date.now()): DateTime {
  if (date === undefined || date === null || date === "") return DateTime.fromMillis(now, { zone });
  let parsed: DateTime | undefined;
  if (typeof date === "string") parsed = DateTime.fromISO(date, { zone });
  else if (typeof date === "number") parsed = DateTime.fromMillis(date, { zone });
  else if (date instanceof Date) parsed = DateTime.fromJSDate(date, { zone });
  if (!parsed?.isValid) throw new InputError(`msg.date must be a date such as 2026-11-22 or a timestamp, not ${JSON.stringify(date)}`);
  return parsed;
}
