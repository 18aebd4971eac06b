import { AuthorizationRequiredError, ConfigError, PipelineError } from "../errors";
import { HttpClient, HttpError } from "../http/client";
import { registerSecret } from "../redact";
import { TokenResponse } from "./types";

/** How one provider runs the OAuth 2.0 authorization-code and refresh-token grants. */
export interface OAuthProfile {
  /** The provider as a user knows it: "GoTo", "Teamleader". */
  name: string;
  /** The config node a person fixes things in, for messages: "goto-credentials". */
  configNode: string;
  authorizeUrl: string;
  tokenUrl: string;
  /** Client credentials in a Basic header (GoTo) or in the body (Teamleader). */
  clientAuth: "basic" | "body";
  bodyFormat: "form" | "json";
  /** Seconds to assume when a token response has no `expires_in`. */
  defaultLifetime?: number;
  /** Token response fields kept beside the tokens (GoTo's `principal`). */
  keepFields?: readonly string[];
  /** Is this answer of the token endpoint a refusal of the refresh token (as opposed to a passing fault)? */
  refusesGrant?(status: number, body: unknown): boolean;
}

export interface ClientCredentials {
  clientId: string;
  clientSecret: string;
}

/** A token endpoint answers a few KB; anything near this is not a token endpoint. */
export const TOKEN_RESPONSE_MAX_BYTES = 1024 * 1024;

/** The provider refused the refresh token or code: retrying will not help. */
export class GrantRefusedError extends AuthorizationRequiredError {}

/** The grant against one provider's token endpoint, for one OAuth client. */
export class OAuthGrant {
  constructor(
    readonly profile: OAuthProfile,
    private readonly client: ClientCredentials,
    private readonly http: HttpClient,
  ) {
    registerSecret(client.clientSecret);
  }

  authorizeUrl(state: string, redirectUri: string): string {
    const url = new URL(this.profile.authorizeUrl);
    url.searchParams.set("client_id", this.client.clientId);
    url.searchParams.set("response_type", "code");
    url.searchParams.set("redirect_uri", redirectUri);
    url.searchParams.set("state", state);
    return url.toString();
  }

  exchangeCode(code: string, redirectUri: string): Promise<TokenResponse> {
    registerSecret(code);
    return this.token({ grant_type: "authorization_code", code, redirect_uri: redirectUri }, "authorization code");
  }

  refresh(refreshToken: string): Promise<TokenResponse> {
    registerSecret(refreshToken);
    return this.token({ grant_type: "refresh_token", refresh_token: refreshToken }, "refresh token");
  }

  private async token(params: Record<string, string>, what: string): Promise<TokenResponse> {
    const body: Record<string, string> = { ...params };
    const headers: Record<string, string> = {};
    if (this.profile.clientAuth === "basic") {
      const basic = Buffer.from(`${this.client.clientId}:${this.client.clientSecret}`).toString("base64");
      registerSecret(basic);
      headers.authorization = `Basic ${basic}`;
    } else {
      body.client_id = this.client.clientId;
      body.client_secret = this.client.clientSecret;
    }
    let raw: Record<string, unknown>;
    try {
      raw = await this.http.json<Record<string, unknown>>({
        method: "POST",
        path: this.profile.tokenUrl,
        headers,
        ...(this.profile.bodyFormat === "json" ? { json: body } : { form: body }),
        auth: false,
        maxResponseBytes: TOKEN_RESPONSE_MAX_BYTES,
        // A single-use refresh token must not be sent twice because an answer got lost.
        idempotent: false,
      });
    } catch (err) {
      throw this.explain(err, what);
    }
    const accessToken = typeof raw.access_token === "string" ? raw.access_token : "";
    if (!accessToken) throw new PipelineError(`${this.profile.name}'s token endpoint answered without an access token`, { code: "GW_OAUTH_RESPONSE" });
    const refreshToken = typeof raw.refresh_token === "string" && raw.refresh_token ? raw.refresh_token : undefined;
    registerSecret(accessToken);
    registerSecret(refreshToken);
    const extra: Record<string, string> = {};
    for (const field of this.profile.keepFields ?? []) {
      if (raw[field] !== undefined && raw[field] !== null) extra[field] = String(raw[field]);
    }
    const expiresIn = Number(raw.expires_in);
    return { accessToken, refreshToken, expiresIn: expiresIn > 0 ? expiresIn : (this.profile.defaultLifetime ?? 3600), extra };
  }

  private explain(err: unknown, what: string): unknown {
    if (!(err instanceof HttpError)) return err;
    const { name, configNode } = this.profile;
    const code = err.providerCode;
    const type = (err.body as { errors?: Array<{ meta?: { type?: string } }> })?.errors?.[0]?.meta?.type;
    if (code === "invalid_client" || type === "invalid_client") {
      return new ConfigError(`${name} refused the client id or secret: check them in the ${configNode} node`, { cause: err, code: "GW_OAUTH_INVALID_CLIENT" });
    }
    const refused = code === "invalid_grant" || this.profile.refusesGrant?.(err.statusCode, err.body) === true;
    if (refused) {
      return new GrantRefusedError(`${name} refused the ${what}: authorize again in the ${configNode} node`, { cause: err, code: "GW_OAUTH_REFUSED" });
    }
    return err;
  }
}
