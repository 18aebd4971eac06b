import { createHash, timingSafeEqual } from "node:crypto";
import type { Database } from "../db/database";
import { DEFAULT_DATABASE_TIMEOUT_MS, MetricsDatabase, MetricsScope, pipelineMetrics } from "../metrics";
import type { NodeAPI, NodeDef, RequestHandler } from "./types";

/**
 * `GET /gluework/metrics` on Node-RED's admin server, in Prometheus text format.
 *
 * Who may read it: an editor login with `flows.read` (as the admin API's own reads), or, for
 * Prometheus, the bearer token in the settings (`gluework.metricsToken` in settings.js, else the
 * environment variable GLUEWORK_METRICS_TOKEN), compared in constant time. With a token and no
 * adminAuth, the token is required.
 */

export const METRICS_ROUTE = "/gluework/metrics";
export const METRICS_TOKEN_ENV = "GLUEWORK_METRICS_TOKEN";

const routed = new WeakSet<object>();

/** Registers the route once per admin server (a module loaded again by a test runtime registers on its own). */
export function registerMetricsRoute(RED: NodeAPI): void {
  if (routed.has(RED.httpAdmin)) return;
  routed.add(RED.httpAdmin);
  const metrics = pipelineMetrics();
  RED.httpAdmin.get(METRICS_ROUTE, metricsGuard(RED), (_req: any, res: any) => {
    const timeoutMs = Number(RED.settings.gluework?.metricsDatabaseTimeoutMs) || DEFAULT_DATABASE_TIMEOUT_MS;
    let scope: MetricsScope;
    try {
      scope = deployedScope(RED);
    } catch {
      scope = { databases: [], nodeIds: [], relays: [] };
    }
    void metrics.scrape(scope, timeoutMs).then(
      (text) => {
        res.setHeader("content-type", metrics.contentType);
        res.setHeader("cache-control", "no-store");
        res.end(text);
      },
      () => {
        if (!res.headersSent) res.status(500).json({ error: "the metrics could not be gathered; see the Node-RED log" });
      },
    );
  });
}

/** The token Prometheus presents, from the settings or the environment; undefined when none is set. */
export function metricsToken(RED: Pick<NodeAPI, "settings">): string | undefined {
  const set = RED.settings.gluework?.metricsToken ?? process.env[METRICS_TOKEN_ENV];
  return typeof set === "string" && set.trim() !== "" ? set.trim() : undefined;
}

function metricsGuard(RED: NodeAPI): RequestHandler {
  const permission = RED.auth.needsPermission("flows.read");
  return (req: any, res: any, next?: (err?: unknown) => void) => {
    const token = metricsToken(RED);
    const offered = bearerOf(req);
    if (token !== undefined && offered !== undefined && sameSecret(offered, token)) return next?.();
    if (token !== undefined && !RED.settings.adminAuth) {
      res.setHeader("www-authenticate", 'Bearer realm="gluework metrics"');
      res.status(401).json({ error: "the metrics need the bearer token set in the settings (gluework.metricsToken)" });
      return;
    }
    // An editor login (Node-RED's own bearer token) or, without adminAuth, anyone.
    permission(req, res, next);
  };
}

function bearerOf(req: any): string | undefined {
  const header = req.headers?.authorization;
  if (typeof header !== "string") return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match ? match[1] : undefined;
}

/** Equal in time independent of where they differ or how long either is (both hashed first). */
function sameSecret(offered: string, expected: string): boolean {
  const a = createHash("sha256").update(offered).digest();
  const b = createHash("sha256").update(expected).digest();
  return timingSafeEqual(a, b);
}

/** What the deployed flows hold: the postgres-database nodes some node uses, every node id, the relays. */
export function deployedScope(RED: NodeAPI): MetricsScope {
  const defs: NodeDef[] = [];
  RED.nodes.eachNode((n) => void defs.push(n));
  const referenced = new Set<string>();
  for (const def of defs) {
    for (const [key, value] of Object.entries(def)) if (key !== "id" && typeof value === "string") referenced.add(value);
  }
  const databases: MetricsDatabase[] = [];
  for (const def of defs) {
    if (def.type !== "postgres-database" || !referenced.has(def.id)) continue;
    const node = RED.nodes.getNode(def.id) as { database?: () => Promise<Database> } | null;
    if (!node || typeof node.database !== "function") continue;
    databases.push({ id: def.id, name: def.name ?? "", database: () => node.database!(), key: node });
  }
  return {
    databases,
    nodeIds: defs.filter((d) => d.type !== "tab" && d.type !== "group" && d.type !== "comment").map((d) => d.id),
    relays: defs.filter((d) => d.type === "mail-relay").map((d) => ({ id: d.id, name: d.name ?? "" })),
  };
}
