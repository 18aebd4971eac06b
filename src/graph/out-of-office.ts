import { createHash } from "node:crypto";
import { convert } from "html-to-text";
import { ianaZone, zonedTimeToInstant } from "../core/time";
import { AutomaticRepliesSetting, DateTimeTimeZone } from "./types";

export type ReplyStatus = "disabled" | "alwaysEnabled" | "scheduled";

/** What one poll saw of a user's automatic replies, reduced to what a change is judged on. */
export interface Observation {
  status: ReplyStatus;
  /** Replies are being sent now: always on, or scheduled with now inside the window. */
  outOfOffice: boolean;
  externalReplyMessage: string;
  internalReplyMessage: string;
  /** The window, as instants (ISO), only when the status is scheduled. */
  scheduledStart: string | null;
  scheduledEnd: string | null;
  audience: string;
}

/** The documented enums come back in varying case ("Scheduled", "scheduled"): normalise them. */
export function normaliseStatus(status: string | undefined): ReplyStatus {
  switch ((status ?? "").toLowerCase()) {
    case "alwaysenabled":
      return "alwaysEnabled";
    case "scheduled":
      return "scheduled";
    default:
      return "disabled";
  }
}

function normaliseAudience(audience: string | undefined): string {
  switch ((audience ?? "").toLowerCase()) {
    case "all":
      return "all";
    case "contactsonly":
      return "contactsOnly";
    default:
      return "none";
  }
}

/** A Graph dateTimeTimeZone as an instant (epoch ms), or null when it cannot be read. */
export function instantOf(value: DateTimeTimeZone | undefined): number | null {
  if (!value?.dateTime) return null;
  const zone = ianaZone(value.timeZone || "UTC");
  if (!zone) return null;
  try {
    return zonedTimeToInstant(value.dateTime.replace(/(\.\d{3})\d*$/, "$1"), zone);
  } catch {
    return null;
  }
}

export function observe(setting: AutomaticRepliesSetting, now: number): Observation {
  const status = normaliseStatus(setting.status);
  const start = status === "scheduled" ? instantOf(setting.scheduledStartDateTime) : null;
  const end = status === "scheduled" ? instantOf(setting.scheduledEndDateTime) : null;
  const outOfOffice = status === "alwaysEnabled" || (status === "scheduled" && start !== null && end !== null && start <= now && now < end);
  return {
    status,
    outOfOffice,
    externalReplyMessage: setting.externalReplyMessage ?? "",
    internalReplyMessage: setting.internalReplyMessage ?? "",
    scheduledStart: start === null ? null : new Date(start).toISOString(),
    scheduledEnd: end === null ? null : new Date(end).toISOString(),
    audience: normaliseAudience(setting.externalAudience),
  };
}

/** Re-judges a stored observation at another moment: a window opens or closes with no new setting. */
export function atMoment(observation: Observation, now: number): Observation {
  if (observation.status !== "scheduled") return observation;
  const start = observation.scheduledStart ? Date.parse(observation.scheduledStart) : NaN;
  const end = observation.scheduledEnd ? Date.parse(observation.scheduledEnd) : NaN;
  return { ...observation, outOfOffice: start <= now && now < end };
}

/** The next moment after `now` at which a scheduled window opens or closes, if any. */
export function nextBoundary(observation: Observation, now: number): number | undefined {
  if (observation.status !== "scheduled") return undefined;
  const moments = [observation.scheduledStart, observation.scheduledEnd].map((m) => (m ? Date.parse(m) : NaN)).filter((m) => m > now);
  return moments.length ? Math.min(...moments) : undefined;
}

/** A change worth a message: whether the user is out, the status, or either reply text. */
export function isChange(previous: Observation, next: Observation): boolean {
  return (
    previous.outOfOffice !== next.outOfOffice ||
    previous.status !== next.status ||
    !sameText(previous.externalReplyMessage, next.externalReplyMessage) ||
    !sameText(previous.internalReplyMessage, next.internalReplyMessage)
  );
}

/** The same HTML is the same text; other HTML is compared as text (converting it costs). */
function sameText(a: string, b: string): boolean {
  return a === b || fingerprint(a) === fingerprint(b);
}

/** Reply HTML as a person reads it. Exchange re-serialises HTML, so texts are compared as text. */
export function plainText(html: string): string {
  if (!html) return "";
  return convert(html, { wordwrap: false, selectors: [{ selector: "a", options: { ignoreHref: true } }] })
    .replace(/\n{3,}/g, "\n\n")
    .trim();
}

function fingerprint(html: string): string {
  return createHash("sha256").update(plainText(html)).digest("base64url");
}
