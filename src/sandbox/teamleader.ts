import { OAuthServer } from "./oauth-server";
import { SandboxReply, SandboxRequest, SandboxServer } from "./server";

export const TEAMLEADER_DEMO_CLIENT = { clientId: "teamleader-demo-client", clientSecret: "teamleader-demo-secret-0123456789" };

/** Teamleader's error body shape: `{ errors: [{ code, title, status, meta }] }` (teamleader.md §1.6). */
export function teamleaderError(status: number, title: string, meta?: Record<string, string>, code = status): SandboxReply {
  return { status, json: { errors: [{ code, title, status, ...(meta ? { meta } : {}) }] } };
}

/**
 * Teamleader Focus's authorization server (focus.teamleader.eu) under /teamleader/auth and its API
 * (api.focus.teamleader.eu) under /teamleader/api. Every refresh token is single use: the used one
 * is revoked, and presenting it again gets the error teamleader2db's README records.
 */
export class TeamleaderSandbox {
  readonly oauth: OAuthServer;

  constructor(readonly server: SandboxServer) {
    this.oauth = new OAuthServer(server, {
      name: "teamleader",
      prefix: "/teamleader/auth",
      authorizePath: "/oauth2/authorize",
      tokenPath: "/oauth2/access_token",
      clientAuth: "body",
      singleUseRefreshTokens: true,
      errors: {
        // Inferred from league/oauth2-server, which Teamleader's answers match (teamleader.md §2).
        invalidClient: () => teamleaderError(401, "Client authentication failed", { type: "invalid_client" }, 4),
        // Reported verbatim (teamleader2db README).
        invalidRefreshToken: () => teamleaderError(400, "The refresh token is invalid.", { type: "invalid_request", hint: "Token has been revoked" }, 8),
        invalidCode: () =>
          teamleaderError(400, "The request is missing a required parameter, includes an invalid parameter value, includes a parameter more than once, or is otherwise malformed.", {
            type: "invalid_request",
            hint: "Authorization code has been revoked",
          }, 3),
      },
    });
    this.oauth.registerClient(TEAMLEADER_DEMO_CLIENT.clientId, TEAMLEADER_DEMO_CLIENT.clientSecret);

    server.route("POST", "/teamleader/api/users.me", (req) =>
      this.authorized(req, () => ({
        json: { data: { id: "b3e5a4a2-0000-4000-8000-000000000001", first_name: "Demo", last_name: "Admin", email: "admin@example.com", account: { type: "account", id: "acc-1" } } },
      })),
    );
  }

  authorized(req: SandboxRequest, ok: (clientId: string) => SandboxReply | Promise<SandboxReply>): SandboxReply | Promise<SandboxReply> {
    const clientId = this.oauth.authenticate(req);
    if (!clientId) {
      this.server.count("teamleader api 401");
      return teamleaderError(401, "Access token is invalid or has expired", { type: "invalid_token" });
    }
    return ok(clientId);
  }
}
