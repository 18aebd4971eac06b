import { InputError, asPipelineError, errorMessage } from "../core/errors";
import { DatabaseProvider, configNode } from "../core/node/config";
import { handleInput } from "../core/node/input";
import { Lifecycle } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { StatusReporter, isSetupGap } from "../core/node/status";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";
import { FlowNodeConfig, scheduleOf } from "../core/schedule";
import { RUN_QUERIES, RunQuery, RunRecord, answerRunQuery, onRun, plain, runLog } from "../core/runs";

interface PipelineRunsDef extends NodeDef {
  database?: string;
  /** `local`: the runs of this Node-RED instance; `all`: every run stored in the database, by any instance. */
  scope?: "local" | "all";
  /** Comma-separated pipelines to emit; empty: all. */
  pipelines?: string;
  /** Comma-separated outcomes to emit; empty: all. */
  outcomes?: string;
}

/** A failed subscription (the database away) is tried again this often. */
const RETRY_MS = 10_000;

export = function register(RED: NodeAPI) {
  function PipelineRunsNode(this: Node, def: PipelineRunsDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    const status = new StatusReporter(node);
    const life = new Lifecycle(node);
    const all = config.scope === "all";
    const pipelines = listOf(config.pipelines);
    const outcomes = listOf(config.outcomes);
    const database = () => life.uses(configNode<DatabaseProvider>(RED, config.database, "postgres-database", "database")).database();
    const scope = all ? "all instances" : "this instance";
    life.onClose(() => status.clear());

    const emit = (record: RunRecord) => {
      if (pipelines.length && !pipelines.includes(record.pipeline)) return;
      if (outcomes.length && !outcomes.includes(record.outcome)) return;
      node.send([{ topic: record.pipeline, payload: plain(record) }, null]);
      const text = `${record.pipeline} ${record.outcome} · ${record.endedAt.toTimeString().slice(0, 5)}`;
      if (record.outcome === "success") status.ok(text);
      else status.warn(text);
    };

    // This instance's runs as they end. With all instances, the stored ones come from the database
    // (this instance's among them); only those it could not store come from here.
    life.onClose(onRun((record) => (!all || record.id === null ? emit(record) : undefined)));
    status.ready(scope);

    let warned = false;
    const listen = async (): Promise<void> => {
      try {
        const stop = await runLog(await database()).subscribe(emit);
        if (life.isClosed) return stop();
        life.onClose(stop);
        status.ready(scope);
        if (warned) node.warn("listening to the runs of every instance again");
        warned = false;
      } catch (err) {
        if (life.isClosed) return;
        status.error(asPipelineError(err).status);
        if (!warned && !isSetupGap(err)) node.warn(`the runs of the other instances cannot be heard (${errorMessage(err)}); trying again every ${RETRY_MS / 1000} s`);
        warned = true;
        life.timeout(listen, RETRY_MS);
      }
    };
    if (all) void listen();

    handleInput(node, status, async (msg, send) => {
      const query = msg.topic as RunQuery;
      if (!RUN_QUERIES.includes(query)) throw new InputError(`msg.topic must name a read: ${RUN_QUERIES.join(", ")} (not ${JSON.stringify(msg.topic ?? null)})`);
      const answer = await answerRunQuery(runLog(await database()), query, msg.payload);
      msg.payload = query === "latest" ? withSchedules(answer as LatestRow[], deployedNodes()) : answer;
      send([null, msg]);
    }, { life });
  }

  /** The nodes of the flows deployed now, for the schedules of the nodes that ran. */
  function deployedNodes(): FlowNodeConfig[] {
    const nodes: FlowNodeConfig[] = [];
    RED.nodes.eachNode((n) => nodes.push(n as unknown as FlowNodeConfig));
    return nodes;
  }

  RED.nodes.registerType("pipeline-runs", PipelineRunsNode);
};

function listOf(value: string | undefined): string[] {
  return String(value ?? "").split(",").map((v) => v.trim()).filter(Boolean);
}

interface LatestRow {
  nodeId: string;
  lastStartedAt: string | null;
  [key: string]: unknown;
}

/**
 * Each node's schedule and next start, read from the deployed flows (the inject nodes that start
 * it, or its own polling interval): `schedule` is null for a node not deployed here.
 */
function withSchedules(rows: LatestRow[], flows: FlowNodeConfig[]): unknown[] {
  return rows.map((row) => {
    const schedule = scheduleOf(row.nodeId, flows, row.lastStartedAt ? new Date(row.lastStartedAt) : null);
    return { ...row, schedule: schedule && { kind: schedule.kind, text: schedule.text }, nextRunAt: schedule?.nextRunAt?.toISOString() ?? null };
  });
}
