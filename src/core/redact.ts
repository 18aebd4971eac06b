// Secrets must never reach a message, a status, a log line or a snapshot. Known secret values are
// registered as they are loaded or issued; patterns catch the usual shapes of the ones we never saw.

const MAX_KNOWN = 2000;
const MIN_SECRET_LENGTH = 6;
const known = new Set<string>();

/** Remember a secret value so that `redact()` masks it wherever it appears. */
export function registerSecret(value: string | null | undefined): void {
  if (!value || value.length < MIN_SECRET_LENGTH) return;
  if (known.has(value)) return;
  if (known.size >= MAX_KNOWN) {
    // Oldest first: Set keeps insertion order. Rotated tokens are the ones that age out.
    const oldest = known.values().next().value;
    if (oldest !== undefined) known.delete(oldest);
  }
  known.add(value);
}

const SECRET_NAMES =
  "access_token|refresh_token|id_token|client_secret|password|passwd|secret|code|token|assertion|api_key|apikey|sig|signature|accountkey";

// In JSON, "code" is usually an error code worth keeping, so it is not on this list.
const JSON_SECRET_NAMES =
  "access_token|refresh_token|id_token|client_secret|password|secret|token|assertion|api_key|refreshToken|accessToken|clientSecret";

const PATTERNS: Array<[RegExp, string]> = [
  // Authorization headers and the like.
  [/\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{6,}/gi, "$1 [redacted]"],
  // key=value in query strings, form bodies and connection strings.
  [new RegExp(`\\b(${SECRET_NAMES})=([^&\\s;"']+)`, "gi"), "$1=[redacted]"],
  // "key": "value" in JSON.
  [new RegExp(`"(${JSON_SECRET_NAMES})"\\s*:\\s*"[^"]*"`, "gi"), '"$1":"[redacted]"'],
  // Credentials in URLs: scheme://user:password@host
  [/(\b[a-z][a-z0-9+.-]*:\/\/[^:/\s@]+):[^@\s/]+@/gi, "$1:[redacted]@"],
  // JWTs wherever they stand.
  [/\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*/g, "[redacted-jwt]"],
];

/** Returns `text` with every registered secret and every secret-shaped value masked. */
export function redact(text: string): string {
  let out = text;
  for (const secret of known) {
    if (out.includes(secret)) out = out.split(secret).join("[redacted]");
  }
  for (const [pattern, replacement] of PATTERNS) out = out.replace(pattern, replacement);
  return out;
}

/** A URL fit for a log line: no query values, no user info. */
export function describeUrl(url: string | URL): string {
  try {
    const u = new URL(String(url));
    const params = [...u.searchParams.keys()];
    const query = params.length ? `?${[...new Set(params)].map((k) => `${k}=…`).join("&")}` : "";
    return `${u.protocol}//${u.host}${u.pathname}${query}`;
  } catch {
    return redact(String(url));
  }
}
