import { CHECK_RESPONSE_MAX_BYTES, CheckFailure, ConnectionChecks, hostOf } from "../core/check-report";
import { EntraAppSettings, EntraAppTokenSource, PUBLIC_AUTHORITY_HOST } from "./app-token";
import { GraphClient, PUBLIC_GRAPH_URL } from "./client";

/** The application permissions the out-of-office monitor needs, granted with admin consent. */
export const GRAPH_ROLES = ["User.Read.All", "MailboxSettings.Read"] as const;

const CONSENT_FIX = (missing: string[]) =>
  `in Entra ID › App registrations › this app › API permissions, add the Microsoft Graph application permissions ${missing.join(" and ")} and press "Grant admin consent"`;

/**
 * The graph-app node's checks: an app token through msal, the roles it carries (the permissions
 * granted with admin consent), and one mailbox's automatic replies when a test address is given.
 */
export async function checkGraphApp(settings: EntraAppSettings & { graphUrl?: string; testAddress?: string }, checks: ConnectionChecks): Promise<void> {
  const source = await checks.run("app settings", "fill in the tenant id, the client id, and the secret or certificate", async () => new EntraAppTokenSource({ ...settings, signal: checks.signal }), () => `app ${settings.clientId} in tenant ${settings.tenantId}`);
  if (!source) return checks.skipAll(["app token", "roles", "automatic replies"], "the app settings are incomplete");
  checks.service(hostOf(settings.authorityHost || PUBLIC_AUTHORITY_HOST));
  const token = await checks.run("app token", "check the tenant id, the client id and the secret (it may have expired: make a new one under Certificates & secrets)", () => source.getAccessToken(), () => "Microsoft identity gave a token");
  if (!token) return checks.skipAll(["roles", "automatic replies"], "no token");
  await checks.run("roles", CONSENT_FIX([...GRAPH_ROLES]), async () => {
    const roles = tokenRoles(token);
    const missing = GRAPH_ROLES.filter((r) => !roles.includes(r));
    if (missing.length) {
      const granted = roles.length ? `it carries ${roles.join(", ")}` : "it carries no roles at all (no permission granted, or the admin consent was revoked)";
      throw new CheckFailure(`the token lacks ${missing.join(" and ")}: ${granted}`, CONSENT_FIX(missing));
    }
    return roles.join(", ");
  });
  if (!settings.testAddress?.trim()) {
    checks.skip("automatic replies", "no test mailbox given: type an address beside the button to read its automatic replies");
    return;
  }
  const address = settings.testAddress.trim();
  const graph = new GraphClient({ baseUrl: settings.graphUrl || undefined, auth: source, timeoutMs: 8000, maxRetries: 1, signal: checks.signal, maxResponseBytes: CHECK_RESPONSE_MAX_BYTES });
  checks.service(hostOf(settings.graphUrl || PUBLIC_GRAPH_URL));
  try {
    await checks.run(`automatic replies of ${address}`, "check the address, that it has an Exchange Online mailbox, and that MailboxSettings.Read has admin consent", async () => {
      const user = await graph.findUser(address);
      const setting = await graph.automaticReplies(user, address);
      return `read: ${setting.status ?? "unknown"}`;
    });
  } finally {
    await graph.close();
  }
}

/** The `roles` claim of an app token (a JWT); no signature check: it only reads what was granted. */
export function tokenRoles(token: string): string[] {
  const payload = token.split(".")[1];
  if (!payload) throw new CheckFailure("the token is not a JWT, so its roles cannot be read", "check that the authority host is Microsoft identity (login.microsoftonline.com or a national cloud)");
  try {
    const claims = JSON.parse(Buffer.from(payload, "base64url").toString("utf8")) as { roles?: unknown };
    return Array.isArray(claims.roles) ? claims.roles.map(String) : [];
  } catch {
    throw new CheckFailure("the token's claims cannot be read", "check that the authority host is Microsoft identity");
  }
}
