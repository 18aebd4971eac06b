import { randomBytes } from "node:crypto";
import { SandboxReply, SandboxRequest, SandboxServer } from "./server";

/** How one provider's authorization server behaves, as far as its documentation tells. */
export interface OAuthBehaviour {
  /** Counter and token prefix: "goto", "teamleader". */
  name: string;
  /** Where its routes hang in the sandbox: "/goto/auth". */
  prefix: string;
  authorizePath: string;
  tokenPath: string;
  /** Client credentials from a Basic header (GoTo) or the request body (Teamleader). */
  clientAuth: "basic" | "body";
  /** Every refresh returns a new refresh token and revokes the old one (Teamleader). */
  singleUseRefreshTokens: boolean;
  /** Otherwise: rotate the refresh token on every Nth refresh (GoTo does so "sometimes"). */
  rotateEvery?: number;
  /** Other fields of a token response (GoTo's `scope` and `principal`). */
  tokenExtras?(clientId: string): Record<string, unknown>;
  /** The answers the provider gives when it refuses something. */
  errors: {
    invalidClient(): SandboxReply;
    invalidRefreshToken(): SandboxReply;
    invalidCode(): SandboxReply;
  };
}

interface RefreshRecord {
  clientId: string;
  revoked: boolean;
  refreshes: number;
}

interface AccessRecord {
  clientId: string;
  expiresAt: number;
}

/**
 * A local OAuth 2.0 authorization server with a provider's behaviour: access-token lifetimes,
 * refresh-token rotation or single use, and its error bodies. Tests shorten lifetimes, revoke
 * tokens and read the counters it keeps (`<name> refresh`, `<name> refresh reused`, …).
 */
export class OAuthServer {
  accessTokenLifetime = 3600;
  private readonly clients = new Map<string, string>();
  private readonly refreshTokens = new Map<string, RefreshRecord>();
  private readonly accessTokens = new Map<string, AccessRecord>();
  private readonly codes = new Map<string, { clientId: string; redirectUri: string; expiresAt: number; used: boolean }>();
  private refreshCount = 0;
  /** When each successful refresh happened, per client: tests read it to find refreshes that came too soon. */
  readonly refreshTimes = new Map<string, number[]>();
  /** Set to refuse the next authorization request as a user clicking "deny" would. */
  denyNextAuthorization = false;

  constructor(
    private readonly sandbox: SandboxServer,
    private readonly behaviour: OAuthBehaviour,
  ) {
    sandbox.route("GET", `${behaviour.prefix}${behaviour.authorizePath}`, (req) => this.authorize(req));
    sandbox.route("POST", `${behaviour.prefix}${behaviour.tokenPath}`, (req) => this.token(req));
    sandbox.route("POST", `/_sandbox/${behaviour.name}/refresh-tokens`, (req) => ({
      json: { refreshToken: this.issueRefreshToken(String(req.body?.clientId ?? "")) },
    }));
    sandbox.persistent(`${behaviour.name}-oauth`, {
      // Spent and expired tokens are left out: after a restart they are refused all the same.
      snapshot: () => ({
        refreshTokens: [...this.refreshTokens].filter(([, r]) => !r.revoked),
        accessTokens: [...this.accessTokens].filter(([, a]) => a.expiresAt > Date.now()),
      }),
      restore: (data: { refreshTokens?: Array<[string, RefreshRecord]>; accessTokens?: Array<[string, AccessRecord]> }) => {
        for (const [k, v] of data.refreshTokens ?? []) this.refreshTokens.set(k, v);
        for (const [k, v] of data.accessTokens ?? []) this.accessTokens.set(k, v);
      },
    });
    // A protected endpoint with no rate limit of its own: the token tests call it to prove a token works.
    sandbox.route("GET", `/_sandbox/${behaviour.name}/whoami`, (req) => {
      const clientId = this.authenticate(req);
      return clientId ? { json: { clientId } } : { status: 401, json: { error: "invalid_token" } };
    });
    sandbox.route("POST", `/_sandbox/${behaviour.name}/lifetime`, (req) => {
      this.accessTokenLifetime = Number(req.body?.seconds) || this.accessTokenLifetime;
      return { status: 204 };
    });
  }

  registerClient(clientId: string, clientSecret: string): void {
    this.clients.set(clientId, clientSecret);
  }

  /** A refresh token as if a user had authorized `clientId` (for tests and the demo). */
  issueRefreshToken(clientId: string): string {
    if (!this.clients.has(clientId)) throw new Error(`unknown client ${clientId}`);
    const token = `${this.behaviour.name}-rt-${randomBytes(24).toString("base64url")}`;
    this.refreshTokens.set(token, { clientId, revoked: false, refreshes: 0 });
    this.sandbox.changed();
    return token;
  }

  /** An authorization code as the authorize endpoint would have given it. */
  issueCode(clientId: string, redirectUri: string, lifetimeMs = 10 * 60_000): string {
    const code = `${this.behaviour.name}-code-${randomBytes(18).toString("base64url")}`;
    this.codes.set(code, { clientId, redirectUri, expiresAt: Date.now() + lifetimeMs, used: false });
    return code;
  }

  revokeRefreshToken(token: string): void {
    const record = this.refreshTokens.get(token);
    if (record) record.revoked = true;
  }

  revokeAllRefreshTokens(): void {
    for (const record of this.refreshTokens.values()) record.revoked = true;
  }

  expireAccessTokens(): void {
    for (const record of this.accessTokens.values()) record.expiresAt = 0;
  }

  /** The client an access token belongs to, or undefined when it is unknown or expired. */
  validate(accessToken: string | undefined): string | undefined {
    if (!accessToken) return undefined;
    const record = this.accessTokens.get(accessToken);
    if (!record || record.expiresAt <= Date.now()) return undefined;
    return record.clientId;
  }

  /** The bearer token of a request, validated. */
  authenticate(req: SandboxRequest): string | undefined {
    const header = String(req.headers.authorization ?? "");
    const match = /^Bearer\s+(.+)$/i.exec(header);
    return this.validate(match?.[1]);
  }

  /** Live (unrevoked) refresh tokens of a client: exactly one for a single-use chain that never forked. */
  liveRefreshTokens(clientId: string): number {
    return [...this.refreshTokens.values()].filter((r) => r.clientId === clientId && !r.revoked).length;
  }

  private authorize(req: SandboxRequest): SandboxReply {
    const clientId = req.query.get("client_id") ?? "";
    const redirectUri = req.query.get("redirect_uri") ?? "";
    const state = req.query.get("state");
    if (!this.clients.has(clientId) || !redirectUri) return { status: 400, text: "unknown client or missing redirect_uri" };
    const target = new URL(redirectUri);
    if (this.denyNextAuthorization) {
      this.denyNextAuthorization = false;
      target.searchParams.set("error", "access_denied");
    } else {
      target.searchParams.set("code", this.issueCode(clientId, redirectUri));
    }
    if (state !== null) target.searchParams.set("state", state);
    this.sandbox.count(`${this.behaviour.name} authorize`);
    return { redirect: target.toString() };
  }

  private token(req: SandboxRequest): SandboxReply {
    const body = (typeof req.body === "object" ? req.body : {}) as Record<string, string>;
    const clientId = this.authenticateClient(req, body);
    if (!clientId) {
      this.sandbox.count(`${this.behaviour.name} invalid client`);
      return this.behaviour.errors.invalidClient();
    }
    if (body.grant_type === "authorization_code") return this.exchangeCode(clientId, body);
    if (body.grant_type === "refresh_token") return this.refresh(clientId, body.refresh_token ?? "");
    return { status: 400, json: { error: "unsupported_grant_type" } };
  }

  private exchangeCode(clientId: string, body: Record<string, string>): SandboxReply {
    const record = this.codes.get(body.code ?? "");
    if (!record || record.used || record.clientId !== clientId || record.expiresAt < Date.now() || record.redirectUri !== body.redirect_uri) {
      if (record) record.used = true; // a code presented twice is dead for good
      this.sandbox.count(`${this.behaviour.name} code refused`);
      return this.behaviour.errors.invalidCode();
    }
    record.used = true;
    this.sandbox.count(`${this.behaviour.name} code exchanged`);
    return { json: this.tokenResponse(clientId, this.issueRefreshToken(clientId)) };
  }

  private refresh(clientId: string, refreshToken: string): SandboxReply {
    this.sandbox.count(`${this.behaviour.name} refresh`);
    const record = this.refreshTokens.get(refreshToken);
    if (!record || record.clientId !== clientId) {
      this.sandbox.count(`${this.behaviour.name} refresh unknown`);
      return this.behaviour.errors.invalidRefreshToken();
    }
    if (record.revoked) {
      this.sandbox.count(`${this.behaviour.name} refresh reused`);
      return this.behaviour.errors.invalidRefreshToken();
    }
    record.refreshes++;
    this.refreshCount++;
    const times = this.refreshTimes.get(clientId) ?? [];
    times.push(Date.now());
    this.refreshTimes.set(clientId, times);
    const rotate = this.behaviour.singleUseRefreshTokens || (this.behaviour.rotateEvery !== undefined && this.refreshCount % this.behaviour.rotateEvery === 0);
    let newRefreshToken: string | undefined;
    if (rotate) {
      record.revoked = true;
      newRefreshToken = this.issueRefreshToken(clientId);
      this.sandbox.count(`${this.behaviour.name} refresh rotated`);
    }
    return { json: this.tokenResponse(clientId, newRefreshToken) };
  }

  private tokenResponse(clientId: string, refreshToken: string | undefined): Record<string, unknown> {
    const accessToken = `${this.behaviour.name}-at-${randomBytes(24).toString("base64url")}`;
    this.accessTokens.set(accessToken, { clientId, expiresAt: Date.now() + this.accessTokenLifetime * 1000 });
    this.sandbox.count(`${this.behaviour.name} access token issued`);
    return {
      access_token: accessToken,
      token_type: "Bearer",
      expires_in: this.accessTokenLifetime,
      ...this.behaviour.tokenExtras?.(clientId),
      ...(refreshToken ? { refresh_token: refreshToken } : {}),
    };
  }

  private authenticateClient(req: SandboxRequest, body: Record<string, string>): string | undefined {
    let clientId: string | undefined;
    let secret: string | undefined;
    if (this.behaviour.clientAuth === "basic") {
      const match = /^Basic\s+(.+)$/i.exec(String(req.headers.authorization ?? ""));
      if (match) {
        const decoded = Buffer.from(match[1]!, "base64").toString("utf8");
        const colon = decoded.indexOf(":");
        clientId = decoded.slice(0, colon);
        secret = decoded.slice(colon + 1);
      }
    } else {
      clientId = body.client_id;
      secret = body.client_secret;
    }
    return clientId && secret !== undefined && this.clients.get(clientId) === secret ? clientId : undefined;
  }
}
