import path from "node:path";
import { Database } from "../../src/core/db/database";
import { HttpClient } from "../../src/core/http/client";
import { TokenCipher } from "../../src/core/tokens/cipher";
import { OAuthGrant } from "../../src/core/tokens/oauth-grant";
import { PostgresTokenStore } from "../../src/core/tokens/pg-store";
import { TokenManager } from "../../src/core/tokens/token-manager";
import { Sandbox, TEAMLEADER_DEMO_CLIENT } from "../../src/sandbox";
import { teamleaderOAuthProfile } from "../../src/teamleader/auth";

export type { DatabaseKind } from "./databases";
export { openDatabase } from "./databases";

/** A token manager on the Teamleader sandbox with tokens in `db`, seeded with a fresh refresh token. */
export async function sandboxTokens(sandbox: Sandbox, db: Database, key = `teamleader:${TEAMLEADER_DEMO_CLIENT.clientId}:${Math.random()}`): Promise<TokenManager> {
  const http = new HttpClient({ name: "Teamleader", baseUrl: sandbox.url, backoff: { baseDelayMs: 10, maxDelayMs: 100 } });
  const grant = new OAuthGrant(teamleaderOAuthProfile(`${sandbox.url}/teamleader/auth`), TEAMLEADER_DEMO_CLIENT, http);
  const store = new PostgresTokenStore(db, TokenCipher.fromSecret(TEAMLEADER_DEMO_CLIENT.clientSecret, `postgres:${key}`));
  const tokens = new TokenManager({ key, store, grant, label: "teamleader test connection" });
  await tokens.seed(sandbox.teamleader.oauth.issueRefreshToken(TEAMLEADER_DEMO_CLIENT.clientId));
  return tokens;
}

let clients = 0;

/** A Teamleader OAuth client of its own for one test, so tests share no token chain. */
export function sandboxClient(sandbox: Sandbox): { clientId: string; clientSecret: string } {
  const client = { clientId: `tl-test-client-${process.pid}-${++clients}`, clientSecret: `tl-test-secret-${Math.random().toString(36).slice(2)}-0123456789` };
  sandbox.teamleader.oauth.registerClient(client.clientId, client.clientSecret);
  return client;
}

export interface RunningInstance {
  ready: Promise<void>;
  statuses: string[];
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Triggers the query node once: its summary, or the error a Catch node got. */
  sync(payload: unknown): Promise<{ summary?: any; error?: string }>;
  /** Triggers it again and again for `durationMs`. */
  loop(payload: unknown, durationMs: number, pauseMs?: number): Promise<import("../fixtures/teamleader-instance").LoopReport>;
  /** Triggers the call node (id "call") about every `everyMs` for `durationMs`. */
  calls(durationMs: number, everyMs: number): Promise<import("../fixtures/teamleader-instance").CallsReport>;
  query(sql: string, params?: unknown[]): Promise<any[]>;
  kill(): void;
  stop(): Promise<void>;
}

/** A Node-RED instance in an OS process of its own (test/fixtures/teamleader-instance.ts). */
export function startInstance(config: import("../fixtures/teamleader-instance").InstanceConfig): RunningInstance {
  const { fork } = require("node:child_process") as typeof import("node:child_process");
  const child = fork(path.join(__dirname, "..", "fixtures", "teamleader-instance.js"), [], {
    env: { ...process.env, GW_TL_INSTANCE: JSON.stringify(config) },
    stdio: ["ignore", "ignore", "inherit", "ipc"],
  });
  const statuses: string[] = [];
  const waiting = new Map<string, Array<(m: any) => void>>();
  let failed: string | undefined;
  const answer = (type: string) =>
    new Promise<any>((resolve, reject) => {
      if (failed) return reject(new Error(failed));
      waiting.set(type, [...(waiting.get(type) ?? []), resolve]);
    });
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const ready = answer("ready").then(() => undefined);
  child.on("message", (m: { type: string; text?: string; error?: string }) => {
    if (m.type === "status") statuses.push(m.text ?? "");
    if (m.type === "failed") failed = m.error;
    const queue = waiting.get(m.type);
    if (queue?.length) queue.shift()!(m);
  });
  return {
    ready,
    statuses,
    exit,
    sync: (payload) => (child.send({ type: "sync", payload }), answer("result")),
    loop: (payload, durationMs, pauseMs) => (child.send({ type: "loop", payload, durationMs, pauseMs }), answer("report").then((m) => m.report)),
    calls: (durationMs, everyMs) => (child.send({ type: "calls", durationMs, everyMs }), answer("calls").then((m) => m.report)),
    query: (sql, params) => (child.send({ type: "query", sql, params }), answer("rows").then((m) => m.rows)),
    kill: () => child.kill("SIGKILL"),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.send({ type: "stop" });
      await exit;
    },
  };
}
