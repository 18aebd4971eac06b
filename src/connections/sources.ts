import { InputError } from "../core/errors";

export interface Connection {
  main: string;
  sub: string;
}

/**
 * The original board's `sessions.csv`: one connection per line as `main;sub` (semicolons, no
 * header). Blank lines and `#` comments are skipped; a line without exactly two fields, or a
 * sub-connection named twice under one main, is refused with its line number.
 */
export function parseConnections(text: string): Connection[] {
  const seen = new Set<string>();
  const out: Connection[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith("#")) return;
    const fields = line.split(";").map((f) => f.trim());
    if (fields.length !== 2 || !fields[0] || !fields[1]) throw new InputError(`connection list line ${i + 1}: expected "main;sub", got "${line.slice(0, 80)}"`);
    const key = `${fields[0]}\u0000${fields[1]}`.toLowerCase();
    if (seen.has(key)) throw new InputError(`connection list line ${i + 1}: "${fields[0]};${fields[1]}" is listed twice`);
    seen.add(key);
    out.push({ main: fields[0], sub: fields[1] });
  });
  return out;
}

/** The original board's `users.txt`: one name per line, trimmed, blank lines and duplicates skipped. */
export function parseUsers(text: string): string[] {
  const names = text.split(/\r?\n/).map((n) => n.trim()).filter((n) => n && !n.startsWith("#"));
  return [...new Set(names)];
}

/** Connections given in a message: the `main;sub` text, or an array of { main, sub } or "main;sub". */
export function connectionsFrom(payload: unknown): Connection[] {
  if (typeof payload === "string") return parseConnections(payload);
  if (Array.isArray(payload)) {
    return parseConnections(
      payload
        .map((c) => {
          if (typeof c === "string") return c;
          if (c && typeof c === "object" && typeof (c as Connection).main === "string" && typeof (c as Connection).sub === "string") return `${(c as Connection).main};${(c as Connection).sub}`;
          throw new InputError('each connection is "main;sub" or { main, sub }');
        })
        .join("\n"),
    );
  }
  throw new InputError('send the connections as "main;sub" lines or an array of { main, sub }');
}

export function usersFrom(payload: unknown): string[] {
  if (typeof payload === "string") return parseUsers(payload);
  if (Array.isArray(payload) && payload.every((u) => typeof u === "string")) return parseUsers(payload.join("\n"));
  throw new InputError("send the users as lines of text or an array of names");
}
