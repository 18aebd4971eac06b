import { instanceName } from "../core/instance";
import { InputError } from "../core/errors";
import { configNode } from "../core/node/config";
import { handleInput } from "../core/node/input";
import { Lifecycle } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { showConnectionState } from "../core/node/oauth-connection";
import { runRecorder } from "../core/node/runs";
import { StatusReporter, formatCount } from "../core/node/status";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";
import type { TeamleaderConnectionProvider } from "../teamleader/connection";
import { parseResources } from "../teamleader/resources";
import type { SyncMode } from "../teamleader/sync";
import { PROJECTS_MODULES, ProjectsModule, SYNC_RESOURCES } from "../teamleader/types";

interface TeamleaderQueryDef {
  connection: string;
  mode: "call" | "sync";
  endpoint?: string;
  allPages?: boolean;
  resources?: string;
  syncMode?: SyncMode;
  tablePrefix?: string;
  projectsModule?: ProjectsModule;
}

/** Version 2 reads "projects" as the Projects module the account uses, where version 1 read the legacy one only. */
const MIGRATIONS = [{ version: 2, up: (c: Record<string, unknown>) => ({ ...c, projectsModule: c.projectsModule ?? "detect" }) }];

export = function register(RED: NodeAPI) {
  function TeamleaderQueryNode(this: Node, def: TeamleaderQueryDef & NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, MIGRATIONS);
    const status = new StatusReporter(node);
    const life = new Lifecycle(node);
    life.onClose(() => status.clear());
    const provider = RED.nodes.getNode(config.connection) as TeamleaderConnectionProvider | null;
    if (provider?.connection) showConnectionState(provider.connection.oauth, status, life);
    // In sync mode each resource synced is a run, recorded in the connection's database.
    const runs = runRecorder(node, life, "teamleader-sync", () => (RED.nodes.getNode(config.connection) as TeamleaderConnectionProvider | null)?.connection.database());

    handleInput(node, status, async (msg, send) => {
      const { connection } = life.uses(configNode<TeamleaderConnectionProvider>(RED, config.connection, "teamleader-connection", "Teamleader connection"));
      const payload = (typeof msg.payload === "object" && msg.payload !== null ? msg.payload : {}) as Record<string, unknown>;

      if (config.mode !== "sync") {
        const endpoint = config.endpoint || (typeof msg.topic === "string" ? msg.topic : "");
        if (!endpoint) throw new InputError("no endpoint: set one in the node or in msg.topic (e.g. users.me)");
        status.busy("requesting");
        if (config.allPages && endpoint.endsWith(".list")) {
          const { records, pages } = await connection.api.listAll(endpoint, payload, life.signal);
          msg.payload = records;
          status.ok(`${formatCount(records.length)} records · ${pages} p.`);
        } else {
          const { body, status: code } = await connection.api.call<{ data?: unknown } | string>(endpoint, payload, life.signal);
          msg.payload = typeof body === "object" && body !== null && "data" in body ? body.data : body === "" ? null : body;
          status.ok(`${endpoint} · ${code}`);
        }
        send(msg);
        return;
      }

      const resources = parseResources(payload.resources ?? config.resources);
      if ("unknown" in resources) throw new InputError(`unknown Teamleader resources: ${resources.unknown.join(", ")} (use ${SYNC_RESOURCES.join(", ")})`);
      const projectsModule = payload.projectsModule ?? config.projectsModule ?? "detect";
      if (!PROJECTS_MODULES.includes(projectsModule as ProjectsModule)) throw new InputError(`msg.payload.projectsModule must be one of ${PROJECTS_MODULES.join(", ")}, not "${String(projectsModule)}"`);
      const asked = payload.mode ?? (payload.full === true ? "full" : payload.full === false ? "delta" : config.syncMode);
      if (asked !== undefined && asked !== "delta" && asked !== "full") throw new InputError(`msg.payload.mode must be "delta" or "full", not "${String(asked)}"`);
      const mode: SyncMode = asked ?? "delta";
      status.busy(`${mode} sync`);
      const sync = await connection.sync(config.tablePrefix || undefined);
      const summary = await sync.run({ resources, mode, projectsModule: projectsModule as ProjectsModule, signal: life.signal, onProgress: (p) => status.busy(`${p.resource} ${formatCount(p.fetched)}`), startRun: (resource) => runs.start(resource) });
      const entries = Object.values(summary.resources);
      const busy = entries.filter((r) => r.status === "already running").length;
      const rows = entries.reduce((n, r) => n + r.fetched, 0);
      const skipped = Object.entries(summary.resources).filter(([, r]) => r.status === "already running");
      // A sync another instance runs is that instance's work: this one stands aside and says who.
      const elsewhere = skipped.filter(([, r]) => r.runningOn && r.runningOn !== instanceName());
      const here = skipped.filter(([, r]) => !elsewhere.some(([, e]) => e === r));
      if (busy > 0 && here.length === 0) {
        const by = [...new Set(elsewhere.map(([, r]) => r.runningOn!))].join(", ");
        status.ready(`${busy === entries.length ? "" : `synced ${formatCount(rows)} · ${busy} `}done by ${by}`);
      } else if (busy > 0) {
        status.warn(busy === entries.length ? "already running" : `${busy} already running`);
        node.warn(`Teamleader sync: ${here.map(([name]) => name).join(", ")} already running; skipped`);
      } else {
        status.ok(`synced ${formatCount(rows)} · ${summary.seconds} s`);
      }
      const unresolved = Object.entries(summary.resources).filter(([, r]) => (r.unresolved ?? 0) > 0);
      if (unresolved.length) {
        status.warn(`${unresolved.reduce((n, [, r]) => n + r.unresolved!, 0)} lookups unresolved`);
        node.warn(`Teamleader sync: ${unresolved.map(([name, r]) => `${r.unresolved} ${name} not seen in the sweep could not be looked up (${r.unresolvedReason}); left as they are, looked up again next sweep`).join("; ")}`);
      }
      msg.payload = summary;
      send(msg);
    }, { life });
  }

  RED.nodes.registerType("teamleader-query", TeamleaderQueryNode);
};
