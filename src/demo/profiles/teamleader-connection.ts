import { TEAMLEADER_DEMO_CLIENT } from "../../sandbox";
import type { DemoProfile } from "../environment";

export const type = "teamleader-connection";

/**
 * The Teamleader sandbox for the connection: its endpoints, its demo client, and a refresh token
 * issued once and kept, as if someone had authorized. The demo account changes a little every
 * minute, so delta syncs find something.
 */
export const profile: DemoProfile = async (_node, env) => {
  const host = process.env.HOST && process.env.HOST !== "0.0.0.0" ? process.env.HOST : "127.0.0.1";
  const refreshToken = await env.secret("teamleader-refresh-token", () => env.sandbox.teamleader.oauth.issueRefreshToken(TEAMLEADER_DEMO_CLIENT.clientId));
  env.sandbox.teamleader.startDrift(60_000);
  return {
    config: {
      authHost: env.sandbox.endpoints.teamleaderAuth,
      apiHost: env.sandbox.endpoints.teamleaderApi,
      redirectUri: `http://${host}:${process.env.NODE_RED_PORT ?? 1880}/teamleader/oauth`,
    },
    credentials: { ...TEAMLEADER_DEMO_CLIENT, refreshToken },
  };
};
