import type { DemoProfile } from "../environment";
import { GOTO_DEMO_CLIENT } from "../../sandbox";

export const type = "goto-credentials";

/**
 * The sandbox's GoTo, with a refresh token issued once and kept in the state folder. Its redirect
 * URI is this Node-RED's callback, as the dialog fills it in when a user opens and saves the node.
 */
export const profile: DemoProfile = async (_node, env) => ({
  config: {
    authHost: `${env.sandbox.url}/goto/auth`,
    apiHost: `${env.sandbox.url}/goto/api`,
    redirectUri: `${env.nodeRedUrl.replace(/\/$/, "")}/gluework/oauth/callback`,
  },
  credentials: {
    clientId: GOTO_DEMO_CLIENT.clientId,
    clientSecret: GOTO_DEMO_CLIENT.clientSecret,
    refreshToken: await env.secret("goto-refresh-token", () => env.sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId)),
  },
});
