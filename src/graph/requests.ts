import { InputError } from "../core/errors";

export type WatchRequest =
  | { kind: "watch"; email: string }
  | { kind: "unwatch"; email: string }
  | { kind: "replace"; emails: string[] }
  | { kind: "poll" }
  | { kind: "list" };

/**
 * What a message asks of the monitor. The original service's body `{ email, status: "True" }`
 * (the strings "True"/"False" as well as booleans) adds or removes a user; `msg.topic` "poll"
 * polls now, "list" lists; an array of addresses (or `{ users: [...] }`, or topic "set") replaces
 * the whole list.
 */
export function parseWatchRequest(topic: unknown, payload: unknown): WatchRequest {
  if (topic === "poll") return { kind: "poll" };
  if (topic === "list") return { kind: "list" };
  if (Array.isArray(payload)) return { kind: "replace", emails: addresses(payload) };
  const body = typeof payload === "string" ? parseJson(payload) : payload;
  if (body && typeof body === "object" && Array.isArray((body as { users?: unknown }).users)) {
    return { kind: "replace", emails: addresses((body as { users: unknown[] }).users) };
  }
  if (topic === "set") throw new InputError("to set the whole watch list, send an array of e-mail addresses (or { users: [...] })");
  if (!body || typeof body !== "object") throw new InputError('send { "email": "user@example.com", "status": true | false } to watch or stop watching a user');
  const { email, status } = body as { email?: unknown; status?: unknown };
  if (typeof email !== "string" || !email.trim()) throw new InputError("msg.payload.email is missing");
  const watch = parseStatus(status);
  return watch ? { kind: "watch", email: email.trim() } : { kind: "unwatch", email: email.trim() };
}

function parseStatus(status: unknown): boolean {
  if (status === true || status === false) return status;
  if (typeof status === "string" && /^(true|false)$/i.test(status.trim())) return status.trim().toLowerCase() === "true";
  throw new InputError('msg.payload.status must be true or false (or the strings "True" and "False")');
}

function addresses(list: unknown[]): string[] {
  return list.map((a) => {
    if (typeof a !== "string") throw new InputError("every entry of the watch list must be an e-mail address");
    return a.trim();
  }).filter(Boolean);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new InputError("msg.payload is text that is not JSON");
  }
}
