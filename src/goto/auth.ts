import { OAuthProfile } from "../core/tokens/oauth-grant";

export const GOTO_AUTH_HOST = "https://authentication.logmeininc.com";

/**
 * GoTo's OAuth: client credentials in a Basic header, form bodies, 3600 s access tokens, and a
 * refresh token that usually stays the same but is sometimes replaced (goto-apis.md §1.3–1.4).
 */
export function gotoOAuthProfile(authHost?: string): OAuthProfile {
  const host = (authHost || GOTO_AUTH_HOST).replace(/\/+$/, "");
  return {
    name: "GoTo",
    configNode: "goto-credentials",
    authorizeUrl: `${host}/oauth/authorize`,
    tokenUrl: `${host}/oauth/token`,
    clientAuth: "basic",
    bodyFormat: "form",
    defaultLifetime: 3600,
    keepFields: ["principal", "scope"],
  };
}
