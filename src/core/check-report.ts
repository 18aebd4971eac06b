import { errorMessage } from "./errors";

/**
 * The report of a connection test: one line per check, each passed, failed (with the reason in
 * plain words and the fix) or skipped (with why). Every check module builds one through
 * `ConnectionChecks`; the editor's Test connection button and a `test` message show it.
 */
export type CheckOutcome = "passed" | "failed" | "skipped";

export interface CheckLine {
  check: string;
  outcome: CheckOutcome;
  /** What was found (passed), what went wrong (failed) or why it did not run (skipped). */
  detail?: string;
  /** What to do about a failure. */
  fix?: string;
}

export interface ConnectionReport {
  /** The config node type tested. */
  type: string;
  /** True when no check failed. */
  ok: boolean;
  checks: CheckLine[];
}

/** A check failed for a reason the check module can name, with the fix. */
export class CheckFailure extends Error {
  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(message);
    this.name = "CheckFailure";
  }
}

/** A check that does not apply here, thrown from inside a check. */
export class CheckSkipped extends Error {}

/** A check reads small answers (a token, a user, a page of one): more than this is the wrong host. */
export const CHECK_RESPONSE_MAX_BYTES = 1024 * 1024;

/** What to do when a service could not be reached, whichever way the network failed. */
export const REACH_FIX = "check the host and port, that the name resolves (DNS), and that no firewall stands between Node-RED and the service";

/**
 * Network errors a check can meet: refused, reset, closed, timed out, DNS, TLS or bytes of another
 * protocol. A test reports all of them with one text, so it tells nothing about what listens
 * on a host and port (it must not become a port scanner).
 */
const NETWORK_CODES = new Set([
  "ECONNREFUSED", "ECONNRESET", "ECONNABORTED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "EHOSTDOWN", "ENETUNREACH", "ENETDOWN", "ENOTFOUND", "EAI_AGAIN", "EAI_FAIL", "EPROTO",
  "GW_HTTP_TIMEOUT", "GW_NETWORK", "REQUEST_SEND_ERROR", "ESOCKET", "ECONNECTION", "EPROTOCOL", "network_error",
]);
const NETWORK_MESSAGES = /Connection terminated|timeout expired|other side closed|socket hang up|Greeting never received|Invalid greeting|wrong version number|does not support SSL|error establishing an SSL|received invalid response|Unexpected server response|unexpected end of file|ended by the other party/i;
// Certificate problems are the service's own answer and have a fix of their own.
const CERTIFICATE_CODES = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS_CERT_ALTNAME/;

/** Is `err` (or what caused it) the network failing, rather than an answer of the service? */
export function isNetworkFailure(err: unknown): boolean {
  const seen = new Set<unknown>();
  const pending: unknown[] = [err];
  let network = false;
  while (pending.length) {
    const e = pending.shift();
    if (!e || typeof e !== "object" || seen.has(e) || seen.size > 12) continue;
    seen.add(e);
    const code = String((e as { code?: unknown }).code ?? "");
    const errorCode = String((e as { errorCode?: unknown }).errorCode ?? "");
    const message = String((e as { message?: unknown }).message ?? "");
    if (CERTIFICATE_CODES.test(code) || /certificate/i.test(message)) return false;
    if (NETWORK_CODES.has(code) || NETWORK_CODES.has(errorCode) || code.startsWith("UND_ERR_") || code.startsWith("HPE_") || code.startsWith("ERR_SSL_") || NETWORK_MESSAGES.test(message)) network = true;
    if ((e as { name?: unknown }).name === "RestError" && !(e as { statusCode?: unknown }).statusCode) network = true;
    pending.push((e as { cause?: unknown }).cause, (e as { reason?: unknown }).reason, ...((e as { errors?: unknown }).errors instanceof Array ? ((e as { errors: unknown[] }).errors) : []));
  }
  return network;
}

/** The errors `err` wraps, itself first (causes, reasons, aggregated errors), a dozen at most. */
function chain(err: unknown): Array<Record<string, unknown>> {
  const seen = new Set<unknown>();
  const pending: unknown[] = [err];
  const out: Array<Record<string, unknown>> = [];
  while (pending.length && out.length < 12) {
    const e = pending.shift();
    if (!e || typeof e !== "object" || seen.has(e)) continue;
    seen.add(e);
    const r = e as Record<string, unknown>;
    out.push(r);
    pending.push(r.cause, r.reason, r.originalError, ...(r.errors instanceof Array ? r.errors : []));
  }
  return out;
}

/** The host name a DNS look-up did not find, when that is why `err` happened ("" when the name is unknown). */
export function unresolvedHost(err: unknown): string | undefined {
  for (const e of chain(err)) {
    const code = String(e.code ?? e.errno ?? "");
    const message = String(e.message ?? "");
    const dns = /^(ENOTFOUND|EAI_AGAIN|EAI_FAIL|EAI_NONAME)$/.test(code) ? code : /getaddrinfo (ENOTFOUND|EAI_AGAIN|EAI_FAIL)|queryA(?:AAA)? (ENOTFOUND|EAI_AGAIN|ESERVFAIL|ENODATA)/.exec(message)?.[0];
    if (dns) return typeof e.hostname === "string" ? e.hostname : (/(?:getaddrinfo|queryA(?:AAA)?) \S+ (\S+)/.exec(message)?.[1] ?? "");
  }
  return undefined;
}

// What TLS itself says of a certificate it refused (a service's own words about certificates are not this).
const TLS_CERTIFICATE_MESSAGES = /self[- ]signed certificate|certificate has expired|certificate is not yet valid|unable to verify the first certificate|unable to get local issuer certificate|does not match certificate's altnames|certificate verify failed/i;

/** Why a certificate was not trusted, in words, when that is why `err` happened. */
export function untrustedCertificate(err: unknown): string | undefined {
  for (const e of chain(err)) {
    const code = String(e.code ?? "");
    const message = String(e.message ?? "");
    if (!CERTIFICATE_CODES.test(code) && !TLS_CERTIFICATE_MESSAGES.test(message)) continue;
    if (/SELF_SIGNED/.test(code) || /self[- ]signed/i.test(message)) return "self-signed certificate";
    if (/EXPIRED/.test(code) || /expired/i.test(message)) return "the certificate has expired";
    if (/NOT_YET_VALID/.test(code)) return "the certificate is not valid yet";
    if (/ALTNAME/.test(code) || /altnames|Hostname\/IP does not match/i.test(message)) return "it was issued for another host name";
    return "its issuer is not one Node-RED trusts";
  }
  return undefined;
}

/** What to do about a certificate Node-RED does not trust. */
export const CERTIFICATE_FIX = "check that the host is the service's; if it is, let Node-RED trust the certificate's issuer (NODE_EXTRA_CA_CERTS=<its CA file> in Node-RED's environment)";

/** What to do about a host name that does not resolve. */
export const DNS_FIX = "check the spelling of the host name, and that the machine running Node-RED can resolve it (its DNS settings)";

/** The `host:port` of a URL as a user reads it (the URL itself when it is none). */
export function hostOf(url: string): string {
  try {
    return new URL(url).host || url;
  } catch {
    return url;
  }
}

/** How long a whole test may take before it answers with what it has (the route answers within 15 s). */
export const TEST_DEADLINE_MS = 13_000;

/**
 * The checks of one test, run in order. `run` records a line per check; a check that has not
 * finished by the deadline is recorded as failed, and the report answers at once.
 */
export class ConnectionChecks {
  readonly lines: CheckLine[] = [];
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;
  private reaching?: { host: string; fix?: string };

  constructor(deadlineMs = TEST_DEADLINE_MS) {
    this.timer = setTimeout(() => this.controller.abort(new Error("the test ran out of time")), deadlineMs);
    this.timer.unref();
  }

  /** Aborted at the deadline: pass it to requests that take one. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /**
   * The service the next checks talk to, as the user typed it (`host:port`): a network failure
   * of theirs reads "could not reach the service at <host>", with `fix` or the generic one.
   */
  service(host: string, fix?: string): void {
    this.reaching = { host, fix };
  }

  pass(check: string, detail?: string): void {
    this.lines.push({ check, outcome: "passed", ...(detail ? { detail } : {}) });
  }

  fail(check: string, detail: string, fix: string): void {
    this.lines.push({ check, outcome: "failed", detail, fix });
  }

  skip(check: string, detail: string): void {
    this.lines.push({ check, outcome: "skipped", detail });
  }

  /**
   * Runs one check: what it returns is the passed line's detail; a CheckFailure or any error is a
   * failed line (its fix, else `fix`); CheckSkipped a skipped one. The value, or undefined.
   */
  async run<T>(check: string, fix: string, work: () => Promise<T>, detail?: (value: T) => string | undefined): Promise<T | undefined> {
    if (this.signal.aborted) {
      this.skip(check, "the test ran out of time before this check");
      return undefined;
    }
    try {
      const value = await Promise.race([work(), this.deadline()]);
      this.pass(check, detail ? detail(value) : typeof value === "string" ? value : undefined);
      return value;
    } catch (err) {
      const unresolved = err instanceof CheckFailure ? undefined : unresolvedHost(err);
      const certificate = err instanceof CheckFailure ? undefined : untrustedCertificate(err);
      if (err instanceof CheckSkipped) this.skip(check, err.message);
      else if (unresolved !== undefined) this.fail(check, `the host name ${unresolved || this.reachingName()} does not resolve`, DNS_FIX);
      else if (certificate) this.fail(check, `the certificate of ${this.reaching?.host ?? "the service"} is not trusted (${certificate})`, certificate.includes("another host name") ? "use the host name the certificate was issued for" : CERTIFICATE_FIX);
      else if (this.reaching && !(err instanceof CheckFailure) && (this.signal.aborted || isNetworkFailure(err))) this.unreachable(check);
      else if (this.signal.aborted && !(err instanceof CheckFailure)) this.fail(check, "no answer in the time a test may take (it answers within 15 s)", `check that the host is right and reachable from Node-RED; if it is, ${fix}`);
      else this.fail(check, errorMessage(err), err instanceof CheckFailure ? err.fix : fix);
      return undefined;
    }
  }

  /** The host name of the service under test, without its port. */
  private reachingName(): string {
    const host = this.reaching?.host ?? "";
    return host.replace(/:\d+$/, "").replace(/^\[(.*)\]$/, "$1") || "of the service";
  }

  /** The one line for a service the network did not let us talk to, however it failed. */
  private unreachable(check: string): void {
    const { host, fix } = this.reaching!;
    this.fail(check, `could not reach the service at ${host}`, fix ? `${fix}; check that the name resolves (DNS) and that no firewall stands between Node-RED and the service` : REACH_FIX);
  }

  /** Every check named here is skipped because `reason`. */
  skipAll(checks: string[], reason: string): void {
    for (const check of checks) this.skip(check, reason);
  }

  report(type: string): ConnectionReport {
    clearTimeout(this.timer);
    return { type, ok: !this.lines.some((l) => l.outcome === "failed"), checks: this.lines };
  }

  private deadline(): Promise<never> {
    const signal = this.signal;
    return new Promise<never>((_resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
  }
}
