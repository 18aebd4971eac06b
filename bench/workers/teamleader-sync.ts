// One full Teamleader sync in a process of its own, so its peak memory is the sync's alone:
// tokens in PostgreSQL, the Teamleader API of a sandbox in another process, rows into PostgreSQL.
import { Database } from "../../src/core/db/database";
import { HttpClient } from "../../src/core/http/client";
import { RateLimiter } from "../../src/core/http/limiter";
import { TokenCipher } from "../../src/core/tokens/cipher";
import { OAuthGrant } from "../../src/core/tokens/oauth-grant";
import { PostgresTokenStore } from "../../src/core/tokens/pg-store";
import { TokenManager } from "../../src/core/tokens/token-manager";
import { TeamleaderApi } from "../../src/teamleader/api";
import { teamleaderOAuthProfile } from "../../src/teamleader/auth";
import { SyncTables } from "../../src/teamleader/tables";
import { SyncSummary, TeamleaderSync } from "../../src/teamleader/sync";

export interface SyncWorkerConfig {
  sandboxUrl: string;
  connection: Record<string, unknown>;
  client: { clientId: string; clientSecret: string };
  refreshToken: string;
  tablePrefix: string;
  /** The client-side limiter; none to run as fast as the server answers. */
  limit?: { requests: number; windowMs: number };
}

export interface SyncWorkerResult {
  summary: SyncSummary;
  /** From the call that started the sync to its summary. */
  seconds: number;
  startedAt: number;
  peakRssMb: number;
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.GW_BENCH_SYNC ?? "{}") as SyncWorkerConfig;
  const db = await Database.open({ kind: "server", connection: config.connection }, { warn: () => undefined });
  const key = `teamleader:${config.client.clientId}:${config.tablePrefix}`;
  const grant = new OAuthGrant(teamleaderOAuthProfile(`${config.sandboxUrl}/teamleader/auth`), config.client, new HttpClient({ name: "Teamleader", baseUrl: config.sandboxUrl }));
  const tokens = new TokenManager({ key, store: new PostgresTokenStore(db, TokenCipher.fromSecret(config.client.clientSecret, `postgres:${key}`)), grant, label: "benchmark connection" });
  await tokens.seed(config.refreshToken);
  await tokens.getAccessToken();
  const api = new TeamleaderApi({ apiHost: `${config.sandboxUrl}/teamleader/api`, auth: tokens, limiter: config.limit ? new RateLimiter(config.limit) : undefined });
  const sync = new TeamleaderSync(api, new SyncTables(db, config.tablePrefix));
  const startedAt = Date.now();
  const started = process.hrtime.bigint();
  const summary = await sync.run({ resources: ["companies"], mode: "full" });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const result: SyncWorkerResult = { summary, seconds, startedAt, peakRssMb: process.resourceUsage().maxRSS / 1024 };
  await api.close();
  await db.close();
  process.send?.({ type: "result", result }, undefined, undefined, () => process.exit(0));
}

main().catch((err: Error) => {
  process.send?.({ type: "failed", error: err.stack ?? err.message }, undefined, undefined, () => process.exit(1));
});
