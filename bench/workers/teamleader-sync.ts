// One full Teamleader sync in a process of its own, so its peak memory is the sync's alone:
// tokens in PostgreSQL, the Teamleader API of a sandbox in another process, rows into PostgreSQL.
import { Database } from "../../src/core/db/database";
import { HttpClient } from "../../src/core/http/client";
import { RateLimiter } from "../../src/core/http/limiter";
import { SharedRateLimiter } from "../../src/core/http/shared-limiter";
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
  /**
   * One of several instances on one database: the limit is shared through it (bucket named by
   * the client id); full syncs run one after another for `durationMs` while `users.me` is called
   * about every `callEveryMs`.
   */
  shared?: { durationMs: number; callEveryMs: number };
}

export interface SyncWorkerResult {
  summary: SyncSummary;
  /** From the call that started the sync to its summary. */
  seconds: number;
  startedAt: number;
  peakRssMb: number;
  /** Shared mode: syncs completed, users.me answer times, and failures. */
  syncs?: number;
  callLatenciesMs?: number[];
  errors?: string[];
}

async function main(): Promise<void> {
  const config = JSON.parse(process.env.GW_BENCH_SYNC ?? "{}") as SyncWorkerConfig;
  const db = await Database.open({ kind: "server", connection: config.connection }, { warn: () => undefined });
  // Instances that share a limit share one token chain too, as the nodes of one integration do.
  const key = `teamleader:${config.client.clientId}:${config.shared ? "shared" : config.tablePrefix}`;
  const grant = new OAuthGrant(teamleaderOAuthProfile(`${config.sandboxUrl}/teamleader/auth`), config.client, new HttpClient({ name: "Teamleader", baseUrl: config.sandboxUrl }));
  const tokens = new TokenManager({ key, store: new PostgresTokenStore(db, TokenCipher.fromSecret(config.client.clientSecret, `postgres:${key}`)), grant, label: "benchmark connection" });
  await tokens.seed(config.refreshToken);
  await tokens.getAccessToken();
  const limiter = config.limit
    ? config.shared
      ? new SharedRateLimiter({ bucket: `teamleader:${config.client.clientId}`, limit: config.limit, database: async () => db })
      : new RateLimiter(config.limit)
    : undefined;
  const api = new TeamleaderApi({ apiHost: `${config.sandboxUrl}/teamleader/api`, auth: tokens, limiter });
  const sync = new TeamleaderSync(api, new SyncTables(db, config.tablePrefix));
  if (config.shared) {
    const { durationMs, callEveryMs } = config.shared;
    const startedAt = Date.now();
    const until = startedAt + durationMs;
    const errors: string[] = [];
    const callLatenciesMs: number[] = [];
    let syncs = 0;
    const syncing = (async () => {
      while (Date.now() < until) {
        await sync.run({ resources: ["companies"], mode: "full" }).then(() => syncs++, (err: Error) => errors.push(err.message));
      }
    })();
    const calling = (async () => {
      while (Date.now() < until) {
        const started = Date.now();
        await api.call("users.me").then(() => callLatenciesMs.push(Date.now() - started), (err: Error) => errors.push(err.message));
        await new Promise((r) => setTimeout(r, Math.max(0, callEveryMs * (0.5 + Math.random()) - (Date.now() - started))));
      }
    })();
    await Promise.all([syncing, calling]);
    const result: SyncWorkerResult = { summary: { mode: "full", seconds: 0, resources: {} }, seconds: (Date.now() - startedAt) / 1000, startedAt, peakRssMb: process.resourceUsage().maxRSS / 1024, syncs, callLatenciesMs, errors };
    await api.close();
    await db.close();
    process.send?.({ type: "result", result }, undefined, undefined, () => process.exit(0));
    return;
  }
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
