import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { HttpClient } from "../../src/core/http/client";
import { Database } from "../../src/core/db/database";
import { TokenCipher } from "../../src/core/tokens/cipher";
import { FileTokenStore } from "../../src/core/tokens/file-store";
import { OAuthGrant, OAuthProfile } from "../../src/core/tokens/oauth-grant";
import { PostgresTokenStore } from "../../src/core/tokens/pg-store";
import { TokenManager } from "../../src/core/tokens/token-manager";
import { TokenStore } from "../../src/core/tokens/types";
import { gotoOAuthProfile } from "../../src/goto/auth";
import { teamleaderOAuthProfile } from "../../src/teamleader/auth";

export type Provider = "goto" | "teamleader";

export function profileFor(provider: Provider, sandboxUrl: string): OAuthProfile {
  return provider === "goto" ? gotoOAuthProfile(`${sandboxUrl}/goto/auth`) : teamleaderOAuthProfile(`${sandboxUrl}/teamleader/auth`);
}

export function fileStore(dir = mkdtempSync(path.join(os.tmpdir(), "gw-tokens-"))): FileTokenStore {
  return new FileTokenStore(dir, TokenCipher.fromSecret("test-credential-secret", "file"));
}

export function postgresStore(db: Database, clientSecret: string): PostgresTokenStore {
  return new PostgresTokenStore(db, TokenCipher.fromSecret(clientSecret, "postgres"));
}

/** A token manager for one sandbox client, as a config node builds it. */
export function manager(opts: { provider: Provider; sandboxUrl: string; store: TokenStore; clientId: string; clientSecret: string; key?: string }): TokenManager {
  const http = new HttpClient({ name: opts.provider, baseUrl: opts.sandboxUrl, backoff: { baseDelayMs: 10, maxDelayMs: 100 } });
  const grant = new OAuthGrant(profileFor(opts.provider, opts.sandboxUrl), { clientId: opts.clientId, clientSecret: opts.clientSecret }, http);
  return new TokenManager({ key: opts.key ?? `${opts.provider}:${opts.clientId}`, store: opts.store, grant, label: `${opts.provider} test connection` });
}
