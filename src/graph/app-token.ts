import { X509Certificate } from "node:crypto";
import { ConfidentialClientApplication, Configuration } from "@azure/msal-node";
import { AuthorizationRequiredError, ConfigError, PipelineError } from "../core/errors";
import { TokenSource } from "../core/http/client";
import { registerSecret } from "../core/redact";
import { wholePem } from "../core/pem";

export const PUBLIC_AUTHORITY_HOST = "https://login.microsoftonline.com";
export const GRAPH_SCOPE = "https://graph.microsoft.com/.default";

export interface EntraAppSettings {
  tenantId: string;
  clientId: string;
  /** A client secret, or a certificate (PEM) with its private key (PEM). */
  clientSecret?: string;
  certificate?: string;
  privateKey?: string;
  /**
   * Empty for the public cloud; a national cloud's https host; or an http:// stand-in, which
   * msal-node accepts only as a token endpoint behind the real authority (it refuses http authorities).
   */
  authorityHost?: string;
  /** The scope to ask for; `<graph base>/.default`. */
  scope?: string;
}

/** msal-node renews a cached token once it is this close to expiry (graph-ooo.md §5.3). */
const MSAL_RENEWAL_MARGIN_MS = 300_000;

/**
 * App-only tokens for Microsoft Graph through msal-node's client-credentials flow.
 * msal-node does not coalesce concurrent requests (graph-ooo.md §5.3), so one request is in flight
 * at a time here; `invalidate` skips msal's cache once after Graph refused a token. msal renews
 * any token within 5 minutes of its expiry, so a token that lives less than that would cost a
 * request per call: the token is kept here until a quarter of its life (at most 5 minutes) is left.
 */
export class EntraAppTokenSource implements TokenSource {
  private readonly app: ConfidentialClientApplication;
  private inflight?: { promise: Promise<string>; forced: boolean };
  private cached?: { token: string; renewAt: number };
  private readonly scope: string;
  private readonly now: () => number;

  constructor(settings: EntraAppSettings, now: () => number = Date.now) {
    this.now = now;
    const { tenantId, clientId } = settings;
    if (!tenantId) throw new ConfigError("the Entra ID app has no tenant id: set it in the graph-app node", { status: "missing tenant id" });
    if (!clientId) throw new ConfigError("the Entra ID app has no client id: set it in the graph-app node", { status: "missing client id" });
    if (["common", "organizations", "consumers"].includes(tenantId.toLowerCase())) {
      throw new ConfigError(`the tenant id must name one tenant (a GUID or a domain), not "${tenantId}": app-only tokens belong to one tenant`);
    }
    this.scope = settings.scope ?? GRAPH_SCOPE;
    this.app = new ConfidentialClientApplication(msalConfiguration(settings));
  }

  getAccessToken(): Promise<string> {
    if (this.cached && this.now() < this.cached.renewAt) return Promise.resolve(this.cached.token);
    return this.inflight?.promise ?? this.start(false);
  }

  /** Graph refused a token: ask msal for a new one, bypassing its cache (once for all callers). */
  invalidate(): Promise<string> {
    this.cached = undefined;
    if (this.inflight?.forced) return this.inflight.promise;
    return this.start(true);
  }

  private start(skipCache: boolean): Promise<string> {
    const previous = this.inflight?.promise ?? Promise.resolve("");
    const promise: Promise<string> = previous
      .catch(() => "")
      .then(() => this.fetch(skipCache))
      .finally(() => {
        if (this.inflight?.promise === promise) this.inflight = undefined;
      });
    this.inflight = { promise, forced: skipCache };
    return promise;
  }

  private async fetch(skipCache: boolean): Promise<string> {
    let result;
    try {
      result = await this.app.acquireTokenByClientCredential({ scopes: [this.scope], skipCache });
    } catch (err) {
      throw explainMsalError(err);
    }
    if (!result?.accessToken) throw new PipelineError("Microsoft identity answered without an access token", { code: "GW_GRAPH_TOKEN" });
    registerSecret(result.accessToken);
    const expiresAt = result.expiresOn?.getTime();
    if (expiresAt !== undefined) {
      const life = expiresAt - this.now();
      this.cached = { token: result.accessToken, renewAt: expiresAt - Math.min(MSAL_RENEWAL_MARGIN_MS, Math.max(0, life) / 4) };
    }
    return result.accessToken;
  }
}

function msalConfiguration(settings: EntraAppSettings): Configuration {
  const host = (settings.authorityHost || PUBLIC_AUTHORITY_HOST).replace(/\/+$/, "");
  const auth: Configuration["auth"] = { clientId: settings.clientId };
  if (settings.clientSecret) {
    registerSecret(settings.clientSecret);
    auth.clientSecret = settings.clientSecret;
  } else if (settings.certificate && settings.privateKey) {
    registerSecret(settings.privateKey);
    const privateKey = wholePem(settings.privateKey);
    registerSecret(privateKey);
    let thumbprint: string;
    try {
      thumbprint = new X509Certificate(wholePem(settings.certificate)).fingerprint256.replace(/:/g, "");
    } catch (err) {
      throw new ConfigError("the certificate is not a PEM-encoded X.509 certificate: paste the whole -----BEGIN CERTIFICATE----- block into the graph-app node", { cause: err, status: "certificate unreadable" });
    }
    auth.clientCertificate = { thumbprintSha256: thumbprint, privateKey };
  } else {
    throw new ConfigError("the Entra ID app needs a client secret, or a certificate with its private key", { status: "missing client secret" });
  }
  if (host.startsWith("http://")) {
    // A local stand-in: keep the real authority and point its token endpoint here (graph-ooo.md §5.4).
    const base = `${host}/${settings.tenantId}`;
    auth.authority = `${PUBLIC_AUTHORITY_HOST}/${settings.tenantId}`;
    auth.authorityMetadata = JSON.stringify({
      token_endpoint: `${base}/oauth2/v2.0/token`,
      issuer: `${base}/v2.0`,
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      jwks_uri: `${base}/discovery/v2.0/keys`,
    });
  } else {
    auth.authority = `${host}/${settings.tenantId}`;
  }
  return { auth };
}

function explainMsalError(err: unknown): PipelineError {
  const e = err as { errorCode?: string; errorMessage?: string; message?: string };
  const code = e?.errorCode ?? "";
  const detail = (e?.errorMessage ?? e?.message ?? String(err)).split("\n")[0]!;
  if (code === "invalid_client" || /AADSTS7000215|AADSTS700027/.test(detail)) {
    return new ConfigError(`Microsoft identity refused the app's secret or certificate: check them in the graph-app node (${detail})`, { cause: err, code: "GW_GRAPH_INVALID_CLIENT", status: "app secret refused" });
  }
  if (code === "unauthorized_client" || /AADSTS700016|AADSTS90002/.test(detail)) {
    return new ConfigError(`Microsoft identity does not know this app or tenant: check the tenant id and client id in the graph-app node (${detail})`, { cause: err, code: "GW_GRAPH_UNKNOWN_APP", status: "unknown app or tenant" });
  }
  if (code === "invalid_grant") return new AuthorizationRequiredError(`Microsoft identity refused the grant: ${detail}`, { cause: err });
  return new PipelineError(`no token from Microsoft identity: ${detail}`, { cause: err, code: "GW_GRAPH_TOKEN", status: "token error" });
}
