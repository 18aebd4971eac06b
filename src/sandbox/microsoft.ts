import { X509Certificate, constants, randomBytes, verify } from "node:crypto";
import { SandboxReply, SandboxRequest, SandboxServer } from "./server";

export const MICROSOFT_DEMO_APP = {
  tenantId: "00000000-0000-4000-8000-00000000c0de",
  clientId: "11111111-1111-4111-8111-111111111111",
  clientSecret: "graph-demo-secret-0123456789",
};

/** Graph's error body: `{ error: { code, message, innerError } }` (graph-ooo.md §1.3). */
export function graphError(status: number, code: string, message: string, headers?: Record<string, string>): SandboxReply {
  return {
    status,
    headers,
    json: { error: { code, message, innerError: { "request-id": randomBytes(8).toString("hex"), date: new Date().toISOString().slice(0, 19) } } },
  };
}

/**
 * Microsoft identity platform for the client-credentials grant (login.microsoftonline.com), at the
 * sandbox's root as the real host has it: msal-node rewrites the first path segment of every
 * endpoint to the tenant id, so no prefix can stand before it. msal-node insists on an https
 * authority, so it is pointed here through `authorityMetadata` with the real authority kept
 * (graph-ooo.md §5.4).
 */
export class MicrosoftSandbox {
  tokenLifetime = 3599;
  private readonly apps = new Map<string, { tenantId: string; secret?: string; certificate?: X509Certificate }>();
  private readonly tokens = new Map<string, { clientId: string; tenantId: string; expiresAt: number }>();
  /**
   * The application permissions granted with admin consent, per app: a token's `roles` claim.
   * Unlisted apps have what the out-of-office monitor needs; an empty list is a revoked consent.
   */
  readonly appRoles = new Map<string, string[]>();

  constructor(readonly server: SandboxServer) {
    this.registerApp(MICROSOFT_DEMO_APP.tenantId, MICROSOFT_DEMO_APP.clientId, MICROSOFT_DEMO_APP.clientSecret);
    server.route("POST", "/:tenant/oauth2/v2.0/token", (req) => this.token(req));
    server.route("GET", "/:tenant/v2.0/.well-known/openid-configuration", (req) => ({ json: this.metadata(req.params.tenant!) }));
  }

  registerApp(tenantId: string, clientId: string, secret: string): void {
    this.apps.set(clientId, { tenantId, secret });
  }

  /** An app that proves itself with a certificate: a signed client assertion (RFC 7523). */
  registerAppCertificate(tenantId: string, clientId: string, certificatePem: string): void {
    this.apps.set(clientId, { tenantId, certificate: new X509Certificate(certificatePem) });
  }

  /** The endpoints msal-node needs, for its `authorityMetadata` option. */
  metadata(tenantId: string): Record<string, string> {
    const base = `${this.server.url}/${tenantId}`;
    return {
      token_endpoint: `${base}/oauth2/v2.0/token`,
      issuer: `${base}/v2.0`,
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      jwks_uri: `${base}/discovery/v2.0/keys`,
    };
  }

  expireTokens(): void {
    for (const t of this.tokens.values()) t.expiresAt = 0;
  }

  /** The app id of a valid bearer token, or undefined. */
  authenticate(req: SandboxRequest): string | undefined {
    const match = /^Bearer\s+(.+)$/i.exec(String(req.headers.authorization ?? ""));
    const record = match ? this.tokens.get(match[1]!) : undefined;
    return record && record.expiresAt > Date.now() ? record.clientId : undefined;
  }

  /**
   * An app token shaped as Microsoft's are: a JWT whose claims carry the tenant, the app and its
   * roles. Its signature is random bytes: Graph here knows its tokens by value.
   */
  private jwt(clientId: string, tenantId: string): string {
    const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString("base64url");
    const now = Math.floor(Date.now() / 1000);
    const roles = this.appRoles.get(clientId) ?? ["User.Read.All", "MailboxSettings.Read"];
    const claims = { aud: "https://graph.microsoft.com", iss: `https://sts.windows.net/${tenantId}/`, tid: tenantId, appid: clientId, iat: now, exp: now + this.tokenLifetime, ...(roles.length ? { roles } : {}) };
    return `${part({ typ: "JWT", alg: "RS256" })}.${part(claims)}.${randomBytes(32).toString("base64url")}`;
  }

  private token(req: SandboxRequest): SandboxReply {
    const body = (req.body ?? {}) as Record<string, string>;
    this.server.count("microsoft token request");
    if (body.grant_type !== "client_credentials") {
      return { status: 400, json: { error: "unsupported_grant_type", error_description: "AADSTS70003: The app requested an unsupported grant type.", error_codes: [70003] } };
    }
    const app = this.apps.get(body.client_id ?? "");
    if (!app || app.tenantId !== req.params.tenant) {
      return {
        status: 400,
        json: {
          error: "unauthorized_client",
          error_description: `AADSTS700016: Application with identifier '${body.client_id}' was not found in the directory '${req.params.tenant}'.`,
          error_codes: [700016],
        },
      };
    }
    if (app.certificate ? !validAssertion(body, app.certificate, body.client_id!) : body.client_secret !== app.secret) {
      return app.certificate
        ? { status: 401, json: { error: "invalid_client", error_description: "AADSTS700027: Client assertion contains an invalid signature.", error_codes: [700027] } }
        : { status: 401, json: { error: "invalid_client", error_description: "AADSTS7000215: Invalid client secret provided.", error_codes: [7000215] } };
    }
    const accessToken = this.jwt(body.client_id!, app.tenantId);
    this.tokens.set(accessToken, { clientId: body.client_id!, tenantId: app.tenantId, expiresAt: Date.now() + this.tokenLifetime * 1000 });
    this.server.count("microsoft token issued");
    return { json: { token_type: "Bearer", expires_in: this.tokenLifetime, ext_expires_in: this.tokenLifetime, access_token: accessToken } };
  }
}

/** A client assertion signed by the app's certificate, for this app, not expired. */
function validAssertion(body: Record<string, string>, certificate: X509Certificate, clientId: string): boolean {
  if (body.client_assertion_type !== "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || !body.client_assertion) return false;
  const [header, payload, signature] = body.client_assertion.split(".");
  if (!header || !payload || !signature) return false;
  const h = JSON.parse(Buffer.from(header, "base64url").toString()) as { alg?: string; "x5t#S256"?: string; x5t?: string };
  const p = JSON.parse(Buffer.from(payload, "base64url").toString()) as { iss?: string; sub?: string; exp?: number };
  const thumbprint = Buffer.from(certificate.fingerprint256.replace(/:/g, ""), "hex").toString("base64url");
  if (h["x5t#S256"] && h["x5t#S256"] !== thumbprint) return false;
  if (p.iss !== clientId || p.sub !== clientId || !p.exp || p.exp * 1000 < Date.now()) return false;
  const key = h.alg === "PS256" ? { key: certificate.publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : certificate.publicKey;
  return verify("sha256", Buffer.from(`${header}.${payload}`), key, Buffer.from(signature, "base64url"));
}
