import { X509Certificate } from "node:crypto";
import { ClientAuthError, ConfidentialClientApplication, Configuration, INetworkModule, NetworkRequestOptions, NetworkResponse } from "@azure/msal-node";
import { AuthorizationRequiredError, ConfigError, PipelineError, errorMessage } from "../core/errors";
import { NetworkError, ResponseTooLargeError, TimeoutError, TokenSource, readCapped } from "../core/http/client";
import { TOKEN_RESPONSE_MAX_BYTES } from "../core/tokens/oauth-grant";
import { registerSecret } from "../core/redact";
import type { RunCounts } from "../core/run-counts";
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
  /** Aborts every request to Microsoft identity (a connection test's deadline). */
  signal?: AbortSignal;
}

/** How long one request to Microsoft identity may take, its answer included. */
const IDENTITY_TIMEOUT_MS = 20_000;

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
  private readonly network: CappedNetworkClient;
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
    this.network = new CappedNetworkClient(settings.signal);
    this.app = new ConfidentialClientApplication({ ...msalConfiguration(settings), system: { networkClient: this.network } });
  }

  getAccessToken(counts?: RunCounts): Promise<string> {
    if (this.cached && this.now() < this.cached.renewAt) return Promise.resolve(this.cached.token);
    return this.inflight?.promise ?? this.start(false, counts);
  }

  /** Graph refused a token: ask msal for a new one, bypassing its cache (once for all callers). */
  invalidate(_rejected?: string, counts?: RunCounts): Promise<string> {
    this.cached = undefined;
    if (this.inflight?.forced) return this.inflight.promise;
    return this.start(true, counts);
  }

  /** A token request for every caller; it counts in the run of the caller that started it. */
  private start(skipCache: boolean, counts?: RunCounts): Promise<string> {
    const previous = this.inflight?.promise ?? Promise.resolve("");
    const promise: Promise<string> = previous
      .catch(() => "")
      .then(() => this.fetch(skipCache, counts))
      .finally(() => {
        if (this.inflight?.promise === promise) this.inflight = undefined;
      });
    this.inflight = { promise, forced: skipCache };
    return promise;
  }

  private async fetch(skipCache: boolean, counts?: RunCounts): Promise<string> {
    let result;
    this.network.failure = undefined;
    try {
      result = await this.app.acquireTokenByClientCredential({ scopes: [this.scope], skipCache });
      if (counts && !result?.fromCache) counts.tokenRefreshes++;
    } catch (err) {
      // msal reports every failure of the network client as one code: the client kept the reason.
      const failure = this.network.failure;
      if (failure instanceof PipelineError) throw failure;
      if (failure) throw new NetworkError(`Microsoft identity could not be reached: ${errorMessage(failure)}`, { status: "unreachable", code: "GW_NETWORK", cause: failure, httpStatus: 502 });
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

/**
 * msal-node's own network client reads an answer whole and gives a POST no deadline: this one
 * reads at most a token endpoint's share within a deadline, and a caller's signal aborts it.
 */
export class CappedNetworkClient implements INetworkModule {
  /** Why the last request failed, in our words (msal turns it into a bare code). */
  failure?: unknown;

  constructor(private readonly signal?: AbortSignal) {}

  sendGetRequestAsync<T>(url: string, options?: NetworkRequestOptions, timeout?: number): Promise<NetworkResponse<T>> {
    return this.send<T>("GET", url, options, timeout);
  }

  sendPostRequestAsync<T>(url: string, options?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    return this.send<T>("POST", url, options);
  }

  private async send<T>(method: string, address: string, options: NetworkRequestOptions | undefined, timeout?: number): Promise<NetworkResponse<T>> {
    const url = new URL(address);
    let res: Awaited<ReturnType<typeof readCapped>>;
    try {
      res = await readCapped(url, {
        method,
        headers: options?.headers ?? {},
        body: method === "POST" ? (options?.body ?? "") : undefined,
        timeoutMs: timeout || IDENTITY_TIMEOUT_MS,
        maxBytes: TOKEN_RESPONSE_MAX_BYTES,
        signal: this.signal,
        name: "Microsoft identity",
      });
    } catch (err) {
      this.failure = err instanceof ResponseTooLargeError ? err : err instanceof TimeoutError ? new Error(`no answer within ${timeout || IDENTITY_TIMEOUT_MS} ms`, { cause: err }) : err;
      throw new ClientAuthError("network_error", errorMessage(err));
    }
    let body: T;
    try {
      body = JSON.parse(res.text) as T;
    } catch (err) {
      this.failure = new PipelineError(`Microsoft identity answered ${res.status} to ${method} ${url.pathname} with something that is not JSON: check the authority host`, { code: "GW_GRAPH_TOKEN", status: "token error", cause: err });
      throw new ClientAuthError("token_parsing_error", "the answer is not JSON");
    }
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(res.headers)) if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(", ") : value;
    return { headers, body, status: res.status };
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
