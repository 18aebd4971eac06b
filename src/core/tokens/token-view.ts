import { CheckFailure, CheckSkipped } from "../check-report";
import { Clock, systemClock } from "../clock";
import type { TokenSource } from "../http/client";
import { registerSecret } from "../redact";
import type { StoredTokens } from "./types";

/** Margin before expiry under which a stored access token is not used for a test. */
const FRESH_FOR_MS = 30_000;

/**
 * A read-only look at one connection's stored tokens, for a connection test. It never refreshes:
 * a refresh spends a single-use refresh token (Teamleader) or replaces it (GoTo), and a test keeps
 * nothing, so it would leave the deployed chain with a token that no longer works. It uses the
 * access token the deployed node stored while it is fresh, and says what to do when there is none.
 */
export class StoredTokenView implements TokenSource {
  constructor(
    private readonly record: StoredTokens | null,
    /** Names the config node in fixes: "goto-credentials node 'Main'". */
    private readonly label: string,
    private readonly clock: Clock = systemClock,
  ) {
    registerSecret(record?.accessToken);
    registerSecret(record?.refreshToken);
  }

  async getAccessToken(): Promise<string> {
    const record = this.record;
    if (!record || (!record.accessToken && !record.refreshToken)) {
      throw new CheckFailure("no token is stored for this client yet", `use Authorize in the ${this.label}'s dialog, then deploy`);
    }
    if (record.state === "needs-authorization") {
      throw new CheckFailure(record.reason ?? "the provider refused the stored refresh token", `use Authorize in the ${this.label}'s dialog, then deploy`);
    }
    if (record.accessToken && record.expiresAt !== null && record.expiresAt - FRESH_FOR_MS > this.clock.now()) return record.accessToken;
    throw new CheckSkipped(
      `not tried: no current access token is stored, and getting one would spend the refresh token, which only the deployed node may do (at its next call). Test again once the flows have used the connection, or use Authorize in the ${this.label}'s dialog`,
    );
  }

  async invalidate(): Promise<string> {
    throw new CheckFailure(
      "the provider refused the stored access token (a test does not refresh it, so as not to spend the refresh token)",
      `use Authorize in the ${this.label}'s dialog, then deploy`,
    );
  }

  /** A field kept beside the tokens (a scope, an account key), if known. */
  async extra(name: string): Promise<string | undefined> {
    return this.record?.extra[name];
  }
}
