import { AdminSandbox } from "./goto-admin";
import { CallReportsSandbox } from "./goto-call-reports";
import { OAuthServer } from "./oauth-server";
import { SandboxReply, SandboxServer } from "./server";

/** The demo and test OAuth client of the GoTo sandbox. */
export const GOTO_DEMO_CLIENT = { clientId: "goto-demo-client", clientSecret: "goto-demo-secret-0123456789" };

export interface GoToSandboxOptions {
  /** Rotate the refresh token on every Nth refresh (GoTo rotates "sometimes", see goto-apis.md §1.4). */
  rotateEvery?: number;
  accountKey?: string;
}

/**
 * GoTo's authentication server (authentication.logmeininc.com) under /goto/auth and its APIs
 * (api.goto.com and api.getgo.com share one prefix here) under /goto/api.
 */
export class GoToSandbox {
  readonly oauth: OAuthServer;
  readonly accountKey: string;
  /** Call Reports and Call Events Report over generated calls. */
  readonly calls: CallReportsSandbox;
  /** The Admin API: the account's users and licenses. */
  readonly admin: AdminSandbox;
  /** The scopes granted to a client's tokens, when not both the package needs (a missing-scope test). */
  readonly scopes = new Map<string, string>();
  /**
   * How an expired or unknown access token is answered: 401 as the GoTo Connect APIs do, or 403
   * with `AUTHN_INVALID_TOKEN` as api.getgo.com may (goto-apis.md §1.5).
   */
  invalidTokenStatus: 401 | 403 = 401;

  constructor(
    readonly server: SandboxServer,
    options: GoToSandboxOptions = {},
  ) {
    this.accountKey = options.accountKey ?? "7288486601101397288";
    this.oauth = new OAuthServer(server, {
      name: "goto",
      prefix: "/goto/auth",
      authorizePath: "/oauth/authorize",
      tokenPath: "/oauth/token",
      clientAuth: "basic",
      singleUseRefreshTokens: false,
      rotateEvery: options.rotateEvery ?? 5,
      tokenExtras: (clientId) => ({ scope: this.scopes.get(clientId) ?? "cr.v1.read identity:", principal: "admin@example.com" }),
      errors: {
        // Verified for the old host (goto-apis.md §1.5).
        invalidClient: () => ({ status: 401, json: { error: "invalid_client", error_description: "Client authentication failed." } }),
        // Unverified: RFC 6749's answer, which GoTo's token server is expected to give.
        invalidRefreshToken: () => ({ status: 400, json: { error: "invalid_grant", error_description: "Invalid refresh token" } }),
        invalidCode: () => ({ status: 400, json: { error: "invalid_grant", error_description: "Invalid authorization code" } }),
      },
    });
    this.oauth.registerClient(GOTO_DEMO_CLIENT.clientId, GOTO_DEMO_CLIENT.clientSecret);

    this.calls = new CallReportsSandbox(server, (req, ok) => this.authorized(req, ok));
    // The Admin API, `me` included: where the account key is found when a user leaves it blank.
    this.admin = new AdminSandbox(server, this.accountKey, (req, ok) => this.authorized(req, ok));
    server.route("POST", "/_sandbox/goto/api", (req) => {
      const body = (req.body ?? {}) as { invalidTokenStatus?: number };
      if (body.invalidTokenStatus !== undefined) {
        if (body.invalidTokenStatus !== 401 && body.invalidTokenStatus !== 403) return { status: 400, json: { message: "invalidTokenStatus is 401 or 403" } };
        this.invalidTokenStatus = body.invalidTokenStatus;
      }
      return { status: 204 };
    });
  }

  /** Answers `ok()` for a valid bearer token, GoTo's 401 (or 403, see invalidTokenStatus) otherwise. */
  authorized(req: Parameters<OAuthServer["authenticate"]>[0], ok: (clientId: string) => SandboxReply | Promise<SandboxReply>): SandboxReply | Promise<SandboxReply> {
    const clientId = this.oauth.authenticate(req);
    if (!clientId) {
      if (this.invalidTokenStatus === 403) {
        this.server.count("goto api 403 token");
        return { status: 403, json: { errorCode: "AUTHN_INVALID_TOKEN", message: "Invalid or expired access token" } };
      }
      this.server.count("goto api 401");
      // Unverified body: GoTo Connect APIs answer 401 for an expired token (goto-apis.md §1.5).
      return { status: 401, json: { errorCode: "AUTHN_INVALID_TOKEN", message: "Invalid or expired access token" } };
    }
    return ok(clientId);
  }
}
