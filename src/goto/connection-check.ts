import { CHECK_RESPONSE_MAX_BYTES, CheckFailure, ConnectionChecks, hostOf } from "../core/check-report";
import { HttpError } from "../core/http/client";
import type { StoredTokenView } from "../core/tokens/token-view";
import { readMe } from "./admin";
import { GoToApis, gotoApiBase } from "./api";

/** The scopes the package's GoTo nodes need, and what for. */
export const GOTO_SCOPES: ReadonlyArray<{ scope: string; for: string }> = [
  { scope: "cr.v1.read", for: "the call logs (goto-call-logs)" },
  { scope: "identity:", for: "the account key and user provisioning (goto-provision-user)" },
];

export interface GoToCheckSettings {
  /** The tokens the deployed node stored, read only: a test refreshes nothing. */
  tokens: StoredTokenView;
  apiHost?: string;
  accountKey?: string;
}

/**
 * The goto-credentials node's checks: the access token the deployed node stored (a test spends no
 * refresh token), the granted scopes, the account key and admin rights.
 */
export async function checkGoTo(settings: GoToCheckSettings, checks: ConnectionChecks): Promise<void> {
  const { tokens } = settings;
  const token = await checks.run("token from the refresh token", "use Authorize in this dialog to get a new refresh token, then deploy", () => tokens.getAccessToken(), () => "the deployed node's access token is current");
  if (!token) return checks.skipAll(["scopes", "account key and admin rights"], "no token");
  await checks.run("scopes", "add the missing scopes to the OAuth client in GoTo's developer portal, then use Authorize again", async () => {
    const granted = ((await tokens.extra("scope")) ?? "").split(/\s+/).filter(Boolean);
    if (!granted.length) return "GoTo did not list the granted scopes; the calls below tell";
    const missing = GOTO_SCOPES.filter((s) => !granted.includes(s.scope));
    if (missing.length) {
      throw new CheckFailure(
        `the token lacks ${missing.map((m) => `${m.scope} (for ${m.for})`).join(" and ")}; it has ${granted.join(" ")}`,
        `add ${missing.map((m) => m.scope).join(" and ")} to the OAuth client in GoTo's developer portal, then use Authorize again`,
      );
    }
    return granted.join(" ");
  });
  const apis = new GoToApis({ auth: tokens, apiHost: settings.apiHost, accountKey: settings.accountKey, signal: checks.signal, maxResponseBytes: CHECK_RESPONSE_MAX_BYTES });
  checks.service(hostOf(gotoApiBase("admin", settings.apiHost)));
  try {
    await checks.run("account key and admin rights", "authorize with a GoTo user who is an admin of the account", async () => {
      let text: string;
      try {
        text = (await apis.api("admin").request({ path: "me", signal: checks.signal })).text;
      } catch (err) {
        if (err instanceof HttpError && err.statusCode === 403) {
          throw new CheckFailure("GoTo's Admin API refused GET /me (403): the token lacks the scope identity:", "add identity: to the OAuth client, then use Authorize again");
        }
        throw err;
      }
      const me = readMe(text);
      const accountKey = me.accountKey;
      const roles = me.adminRoles;
      const email = me.email ?? "the user";
      if (!accountKey) throw new CheckFailure("GoTo's Admin API did not tell the account key", "fill in the account key in this dialog");
      if (settings.accountKey && settings.accountKey !== accountKey) {
        throw new CheckFailure(`the account key ${settings.accountKey} is not the account of ${email} (${accountKey})`, `set the account key to ${accountKey}, or leave it empty`);
      }
      if (!roles.length) {
        throw new CheckFailure(`${email} is not an admin of account ${accountKey}: provisioning needs one`, "use Authorize with a super admin, or a user whose role manages users");
      }
      return `account ${accountKey}, ${email} is ${roles.join(", ")}`;
    });
  } finally {
    await apis.close();
  }
}
