import { CHECK_RESPONSE_MAX_BYTES, CheckFailure, ConnectionChecks, hostOf } from "../core/check-report";
import { HttpError } from "../core/http/client";
import { TokenManager } from "../core/tokens/token-manager";
import { freshToken } from "../goto/connection-check";
import { TEAMLEADER_API_HOST, TeamleaderApi } from "./api";
import { RESOURCES, parseResources } from "./resources";
import type { SyncResource } from "./types";

export interface TeamleaderCheckSettings {
  /** The token manager over the integration's shared chain in the database. */
  tokens: TokenManager;
  apiHost?: string;
  /** The resources the flows sync (every one when none is named). */
  resources: SyncResource[];
}

/**
 * The teamleader-connection node's checks: a token through the shared chain (a single-use refresh
 * token is spent only inside the store's lock, where its successor is kept), users.me, and the
 * scopes the integration lacks for the resources the flows sync (a 403 on their list call).
 */
export async function checkTeamleader(settings: TeamleaderCheckSettings, checks: ConnectionChecks): Promise<void> {
  const token = await checks.run("token through the shared chain", "use Authorize in this dialog (saving the integration in the Marketplace ends its refresh tokens), then deploy", () => freshToken(settings.tokens), () => "Teamleader gave an access token");
  if (!token) return checks.skipAll(["users.me", "scopes"], "no token");
  const api = new TeamleaderApi({ apiHost: settings.apiHost, auth: settings.tokens, timeoutMs: 8000, signal: checks.signal, maxResponseBytes: CHECK_RESPONSE_MAX_BYTES });
  checks.service(hostOf(settings.apiHost || TEAMLEADER_API_HOST));
  try {
    await checks.run("users.me", "authorize again with a Teamleader user of the account", async () => {
      const { body } = await api.call<{ data?: { first_name?: string; last_name?: string; email?: string } }>("users.me", {}, checks.signal);
      const me = body.data ?? {};
      return `signed in as ${[me.first_name, me.last_name].filter(Boolean).join(" ") || "a user"}${me.email ? ` (${me.email})` : ""}`;
    });
    await checks.run("scopes", "tick the missing scopes on the integration in Teamleader's Marketplace; saving it ends the refresh tokens, so use Authorize again", async () => {
      const lacking: string[] = [];
      for (const resource of settings.resources) {
        const spec = RESOURCES[resource];
        try {
          await api.call(spec.endpoint, spec.paged ? { page: { size: 1, number: 1 } } : {}, checks.signal);
        } catch (err) {
          if (err instanceof HttpError && err.statusCode === 403) lacking.push(resource);
          else throw err;
        }
      }
      if (lacking.length) {
        throw new CheckFailure(
          `the integration may not read ${lacking.join(", ")} (403), which the flows sync`,
          `tick the scopes for ${lacking.join(", ")} on the integration in Teamleader's Marketplace; saving it ends the refresh tokens, so use Authorize again`,
        );
      }
      return `may read ${settings.resources.join(", ")}`;
    });
  } finally {
    await api.close();
  }
}

/** Every resource the sync settings name (one per node; an empty one means all), in documented order. */
export function syncedResources(settings: unknown[]): SyncResource[] {
  const wanted = new Set<SyncResource>();
  for (const value of settings.length ? settings : [""]) {
    const parsed = parseResources(value);
    if (!("unknown" in parsed)) for (const r of parsed) wanted.add(r);
  }
  return (Object.keys(RESOURCES) as SyncResource[]).filter((r) => wanted.has(r));
}
