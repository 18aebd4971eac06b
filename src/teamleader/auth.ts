import { OAuthProfile } from "../core/tokens/oauth-grant";

export const TEAMLEADER_AUTH_HOST = "https://focus.teamleader.eu";

/**
 * Teamleader Focus's OAuth: client credentials in the body, single-use refresh tokens, and a
 * refusal that reads "The refresh token is invalid." rather than RFC 6749's invalid_grant
 * (teamleader.md §2).
 */
export function teamleaderOAuthProfile(authHost?: string): OAuthProfile {
  const host = (authHost || TEAMLEADER_AUTH_HOST).replace(/\/+$/, "");
  return {
    name: "Teamleader",
    configNode: "teamleader-connection",
    authorizeUrl: `${host}/oauth2/authorize`,
    tokenUrl: `${host}/oauth2/access_token`,
    clientAuth: "body",
    bodyFormat: "json",
    defaultLifetime: 3600,
    refusesGrant: (status, body) => {
      if (status !== 400 && status !== 401) return false;
      const first = (body as { errors?: Array<{ title?: string; meta?: { hint?: string; type?: string } }> })?.errors?.[0];
      return /refresh token is invalid|authorization code/i.test(first?.title ?? "") || /revoked|expired/i.test(first?.meta?.hint ?? "");
    },
  };
}
