import { randomUUID } from "node:crypto";
import jwt from "jsonwebtoken";
import { Clock, systemClock } from "../core/clock";
import { ConfigError } from "../core/errors";
import { SigningKeys } from "./keys";
import { LoginThrottle } from "./throttle";
import { UserList } from "./users";

export interface AuthoritySettings {
  keys: SigningKeys;
  users: UserList;
  /** `iss` of every token issued, and the only issuer accepted. */
  issuer: string;
  /** The audience a token is for when a node names none. */
  audience: string;
  /** Seconds of clock difference tolerated on `exp` and `nbf`. */
  clockToleranceS?: number;
  /** Refuse tokens of users no longer in the list (on by default). */
  requireKnownUser?: boolean;
  throttle?: LoginThrottle;
  clock?: Clock;
  /** Tokens remembered as verified, so a caller's repeated token skips the signature (0: none). */
  verifiedCacheSize?: number;
}

export interface IssuedToken {
  token: string;
  /** Seconds until the token expires. */
  expiresIn: number;
}

export interface VerifiedUser {
  username: string;
  claims: jwt.JwtPayload;
}

/** What a jwt-auth-key config node offers the jwt-auth nodes that use it. */
export interface JwtKeyProvider {
  readonly type: "jwt-auth-key";
  /** The key and users, or the ConfigError that says what is wrong with them. */
  authority(): TokenAuthority;
}

/** Why a login or a token was refused, in a few words a caller may see; `status` is the HTTP answer. */
export class Refusal {
  constructor(
    readonly reason: string,
    readonly status = 401,
    readonly retryAfterS?: number,
  ) {}
}

/**
 * Issues and checks the tokens of one key and one user list. Tokens carry `sub`, `iat`, `exp`,
 * `iss`, `aud` and a `jti`; checks allow only the key's algorithm, require `exp`, match issuer
 * and audience, and tolerate a little clock skew. Failed logins are slowed per user and address.
 */
export class TokenAuthority {
  readonly throttle: LoginThrottle;
  private readonly clock: Clock;
  /**
   * Tokens whose signature and claims have been checked, by audience and token: a monitoring
   * system sends the same token with every message, and the signature cannot change. Time and
   * the user list are checked again on every use; the oldest entry goes first.
   */
  private readonly verified = new Map<string, VerifiedUser & { claims: { exp: number } }>();
  private readonly cacheSize: number;

  constructor(readonly settings: AuthoritySettings) {
    this.throttle = settings.throttle ?? new LoginThrottle({}, settings.clock);
    this.clock = settings.clock ?? systemClock;
    this.cacheSize = settings.verifiedCacheSize ?? 1000;
  }

  /** A token for `username`, who has already been checked. */
  issue(username: string, options: { audience?: string; lifetimeS: number }): IssuedToken {
    const { keys, issuer } = this.settings;
    if (!keys.signWith) throw new ConfigError("this key has only a public key: it can verify tokens but not issue them; add the private key");
    const now = Math.floor(this.clock.now() / 1000);
    const token = jwt.sign({ sub: username, iat: now, exp: now + options.lifetimeS }, keys.signWith, {
      algorithm: keys.algorithm,
      issuer,
      audience: options.audience || this.settings.audience,
      jwtid: randomUUID(),
    });
    return { token, expiresIn: options.lifetimeS };
  }

  /** Checks a name and password (slowed after failures), then issues a token. */
  async login(
    credentials: { username: string; password: string } | undefined,
    address: string,
    options: { audience?: string; lifetimeS: number },
  ): Promise<IssuedToken | Refusal> {
    if (!credentials || !credentials.username || typeof credentials.password !== "string") {
      return new Refusal("username and password required");
    }
    const { username } = credentials;
    // The try is counted before the (slow) password check: concurrent guesses cannot all pass.
    // A name that does not exist goes the same way, so neither the waits nor the time tell it apart.
    const waitMs = await this.throttle.reserve(username, address);
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      return new Refusal(`too many failed logins: try again in ${seconds} s`, 429, seconds);
    }
    if (!(await this.settings.users.check(username, credentials.password))) {
      return new Refusal("wrong username or password");
    }
    await this.throttle.succeeded(username, address);
    return this.issue(username, options);
  }

  /** The user a token stands for, or why it is refused. */
  verify(token: string | undefined, options: { audience?: string } = {}): VerifiedUser | Refusal {
    if (!token) return new Refusal("token missing");
    const audience = options.audience || this.settings.audience;
    const tolerance = this.settings.clockToleranceS ?? 30;
    const now = Math.floor(this.clock.now() / 1000);
    const cacheKey = `${audience}\n${token}`;
    const known = this.verified.get(cacheKey);
    if (known) {
      // The same tests as jsonwebtoken's, against the time of this call.
      const { exp, nbf } = known.claims;
      if (now >= exp + tolerance) {
        this.verified.delete(cacheKey);
        return new Refusal("token expired");
      }
      if (typeof nbf === "number" && nbf > now + tolerance) return new Refusal("token not valid yet");
      if (this.settings.requireKnownUser !== false && !this.settings.users.has(known.username)) return new Refusal("unknown user");
      return { username: known.username, claims: structuredClone(known.claims) };
    }
    const { keys } = this.settings;
    const decoded = jwt.decode(token, { complete: true });
    if (!decoded || typeof decoded.payload === "string") return new Refusal("malformed token");
    // Neither the token's algorithm nor the key's is named: a wrong one reads as a bad signature.
    if (decoded.header.alg !== keys.algorithm) return new Refusal("invalid signature");
    let claims: jwt.JwtPayload;
    try {
      claims = jwt.verify(token, keys.verifyWith, {
        algorithms: [keys.algorithm],
        issuer: this.settings.issuer,
        audience,
        clockTolerance: tolerance,
        clockTimestamp: now,
      }) as jwt.JwtPayload;
    } catch (err) {
      return new Refusal(reasonOf(err));
    }
    if (typeof claims.exp !== "number") return new Refusal("token has no expiry (exp)");
    // A time no date can show (1e300, a negative year) is refused, not carried into msg.user.
    for (const claim of ["exp", "nbf", "iat"] as const) {
      const value = claims[claim];
      if (value !== undefined && !(typeof value === "number" && value >= 0 && value <= LATEST_TIME_S)) return new Refusal(`token has an invalid time (${claim})`);
    }
    if (typeof claims.sub !== "string" || !claims.sub) return new Refusal("token has no subject (sub)");
    if (this.settings.requireKnownUser !== false && !this.settings.users.has(claims.sub)) return new Refusal("unknown user");
    if (this.cacheSize > 0) {
      if (this.verified.size >= this.cacheSize) this.verified.delete(this.verified.keys().next().value!);
      this.verified.set(cacheKey, { username: claims.sub, claims: structuredClone(claims) as jwt.JwtPayload & { exp: number } });
    }
    return { username: claims.sub, claims };
  }
}

/** 9999-12-31T23:59:59Z: the last second a JWT time claim may name. */
const LATEST_TIME_S = 253_402_300_799;

function reasonOf(err: unknown): string {
  if (err instanceof jwt.TokenExpiredError) return "token expired";
  if (err instanceof jwt.NotBeforeError) return "token not valid yet";
  const message = (err as Error)?.message ?? "";
  if (/signature is required/.test(message)) return "invalid signature";
  if (/invalid signature/.test(message)) return "invalid signature";
  if (/audience invalid/.test(message)) return "wrong audience";
  if (/issuer invalid/.test(message)) return "wrong issuer";
  if (/invalid algorithm/.test(message)) return "invalid signature";
  if (/malformed|invalid token|Unexpected token|must be provided/.test(message)) return "malformed token";
  return "invalid token";
}

/** A request as an `http in` node hands it on: its headers, parsed cookies and address. */
export interface RequestLike {
  headers?: Record<string, string | string[] | undefined>;
  cookies?: Record<string, string | undefined>;
  ip?: string;
  socket?: { remoteAddress?: string };
  secure?: boolean;
  protocol?: string;
}

export interface TokenSources {
  /** The original's `x-access-tokens` header. */
  header: boolean;
  /** `Authorization: Bearer …` (what Alertmanager and Grafana send). */
  bearer: boolean;
  /** A cookie of this name, when not empty (a browser login). */
  cookie?: string;
}

/** The token a request carries, from the first enabled source that has one. */
export function tokenFrom(req: RequestLike | undefined, sources: TokenSources): string | undefined {
  if (!req) return undefined;
  if (sources.header) {
    const value = header(req, "x-access-tokens");
    if (value) return value.trim();
  }
  if (sources.bearer) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header(req, "authorization") ?? "");
    if (match) return match[1];
  }
  if (sources.cookie) {
    const value = req.cookies?.[sources.cookie];
    if (value) return value;
  }
  return undefined;
}

/** Name and password from HTTP Basic, or else from a body `{ username, password }` (JSON or form). */
export function loginCredentials(req: RequestLike | undefined, body: unknown): { username: string; password: string } | undefined {
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header(req, "authorization") ?? "");
  if (basic) {
    const decoded = Buffer.from(basic[1]!, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) return undefined;
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (body && typeof body === "object") {
    const { username, password } = body as Record<string, unknown>;
    if (typeof username === "string" && typeof password === "string") return { username, password };
  }
  return undefined;
}

/** Whether the request tried HTTP Basic: only then does a refusal ask the browser for a password. */
export function usedBasic(req: RequestLike | undefined): boolean {
  return /^Basic\b/i.test(header(req, "authorization") ?? "");
}

/** Whether the browser reached us over HTTPS, directly or through a proxy that says so. */
export function cameOverHttps(req: RequestLike | undefined): boolean {
  if (!req) return false;
  if (req.secure === true || req.protocol === "https") return true;
  const forwarded = header(req, "x-forwarded-proto");
  return typeof forwarded === "string" && forwarded.split(",")[0]!.trim().toLowerCase() === "https";
}

/**
 * The caller's address as the web server sees it: `X-Forwarded-For` counts only when Node-RED's
 * `httpServerOptions` trust the proxy (Express's `trust proxy`, which `req.ip` follows), so a
 * caller cannot choose the address its failed logins are counted under.
 */
export function clientAddress(req: RequestLike | undefined): string {
  return req?.ip || req?.socket?.remoteAddress || "local";
}

function header(req: RequestLike | undefined, name: string): string | undefined {
  const value = req?.headers?.[name];
  return Array.isArray(value) ? value[0] : value;
}

/** "15m", "12h", "7d" or plain seconds, as seconds (never the milliseconds jsonwebtoken takes a bare string for). */
export function lifetimeSeconds(text: string | number | undefined, fallback = 3600): number {
  if (text === undefined || text === "") return fallback;
  const match = /^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)?\s*$/i.exec(String(text));
  if (!match) throw new ConfigError(`token lifetime "${text}" is not understood: write e.g. 900, 15m, 12h or 7d`);
  const factor = { s: 1, m: 60, h: 3600, d: 86_400 }[(match[2] ?? "s").toLowerCase() as "s"];
  const seconds = Math.round(Number(match[1]) * factor);
  if (seconds < 1) throw new ConfigError("the token lifetime must be at least one second");
  return seconds;
}
