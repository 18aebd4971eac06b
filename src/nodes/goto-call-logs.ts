import { InputError, errorMessage } from "../core/errors";
import { configNode } from "../core/node/config";
import { handleInput } from "../core/node/input";
import { Lifecycle } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { showConnectionState } from "../core/node/oauth-connection";
import { endSequence, partSent } from "../core/node/sequence-flow";
import { StatusReporter, formatCount } from "../core/node/status";
import type { Node, NodeAPI, NodeDef, NodeMessage } from "../core/node/types";
import type { GoToConnection } from "../goto/api";
import { CallSource, DayProgress, callLogsForDay } from "../goto/call-reports";
import { DayRange, calendarDay, daysOfRange, timeZone } from "../goto/days";
import { DoneElsewhere, OnceRuns } from "../core/db/once";
import { runRecorder } from "../core/node/runs";

interface CallLogsDef extends NodeDef {
  goto?: string;
  source?: CallSource;
  timeZone?: string;
  startDay?: string | number;
  days?: string | number;
  batchSize?: string | number;
}

/** Batches a day may be ahead of the writer downstream. */
const AHEAD = 2;
/** The status shows the pages read at most this often. */
const PROGRESS_MS = 250;
/** A day another replica exported is exported again on a trigger this long after (a backfill the next morning). */
const EXPORT_AGAIN_AFTER_MS = 3600_000;

export = function register(RED: NodeAPI) {
  function GoToCallLogsNode(this: Node, def: CallLogsDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    const status = new StatusReporter(node);
    const life = new Lifecycle(node);
    life.onClose(() => status.clear());
    const existing = config.goto ? (RED.nodes.getNode(config.goto) as GoToConnection | null) : null;
    if (existing?.connection) showConnectionState(existing.connection, status, life);
    // Each day exported is a run, recorded where the replicas share their tokens.
    const recorder = runRecorder(node, life, "call-logs", () => (config.goto ? (RED.nodes.getNode(config.goto) as GoToConnection | null)?.sharedDatabase() : undefined));

    handleInput(node, status, async (msg, send) => {
      const goto = life.uses(configNode<GoToConnection>(RED, config.goto, "goto-credentials", "GoTo connection"));
      const zone = timeZone(config.timeZone);
      const dates = daysOfRange(rangeOf(msg.payload, config), zone);
      const source: CallSource = config.source === "call-events" ? "call-events" : "call-reports";
      const client = goto.api(source === "call-events" ? "call-events-report" : "call-reports");
      const accountKey = source === "call-events" ? await goto.accountKey() : goto.configuredAccountKey;
      // With replicas on one database, each day is exported by the first to claim it.
      const shared = goto.sharedDatabase();
      const runs = shared && new OnceRuns(await shared, `goto-call-logs:${node.id}`);
      let calls = 0;
      let exported = 0;
      let elsewhere: DoneElsewhere | undefined;
      for (const date of dates) {
        const day = calendarDay(date, zone);
        const claimed = runs ? await runs.claim(date, { againAfterMs: EXPORT_AGAIN_AFTER_MS, againHere: true }) : undefined;
        if (claimed && "elsewhere" in claimed) {
          elsewhere = claimed.elsewhere;
          const skipped = recorder.start(date);
          skipped.details = { doneBy: elsewhere.by };
          skipped.end("skipped");
          continue;
        }
        const claim = claimed?.claim;
        const id = RED.util.generateId();
        const run = recorder.start(date);
        run.details = { source };
        status.busy(`${date} · requesting`);
        let shown = 0;
        const onProgress = ({ pages, calls: read }: DayProgress) => {
          run.counts.pages = pages;
          run.counts.rows = read;
          // A page can take a few milliseconds: the status follows at a pace a person can read.
          const now = Date.now();
          if (now - shown < PROGRESS_MS) return;
          shown = now;
          status.busy(`${date} · page ${formatCount(pages)} · ${formatCount(read)} calls`);
        };
        let complete = false;
        let dayCalls = 0;
        try {
          for await (const batch of callLogsForDay(client.withCounts(run.counts), day, { source, accountKey, batchSize: Number(config.batchSize) || undefined, signal: life.signal, onProgress })) {
            const parts = { id, index: batch.index, ...(batch.last ? { count: batch.index + 1 } : {}) };
            send({ ...msg, payload: batch.rows, parts, date, filename: `${date}_call_logs.csv` });
            if (batch.last) dayCalls = batch.total;
            // Read on only as fast as a writer downstream keeps up (when it says so).
            else await partSent(id, batch.index, AHEAD, undefined, life.signal);
          }
          complete = true;
          run.counts.rows = dayCalls;
          run.end("success");
        } catch (err) {
          run.end("failure", err);
          throw err;
        } finally {
          // A day that stopped half-way is abandoned: a writer downstream drops what it has of it now.
          endSequence(id, !complete);
          await (complete ? claim?.done({ calls: dayCalls }) : claim?.failed())?.catch((err: unknown) => node.warn(`the export of ${date} was not recorded as ${complete ? "done" : "failed"}: ${errorMessage(err)}`));
        }
        calls += dayCalls;
        exported++;
      }
      if (elsewhere && exported === 0) {
        status.ready(`${dates.length === 1 ? dates[0] : `${dates.length} days`} · done by ${elsewhere.by}`);
        return;
      }
      const skipped = dates.length - exported;
      status.ok(`${dates.length === 1 ? dates[0] : `${exported} days`} · ${formatCount(calls)} calls${skipped ? ` · ${skipped} done by ${elsewhere!.by}` : ""}`);
    }, { life });
  }

  RED.nodes.registerType("goto-call-logs", GoToCallLogsNode);
};

/** The days to collect: `msg.payload` when it names them, else the node's settings. */
function rangeOf(payload: NodeMessage["payload"], config: CallLogsDef): DayRange {
  if (payload && typeof payload === "object" && !Array.isArray(payload)) {
    const p = payload as Record<string, unknown>;
    if (["startDay", "days", "from", "to"].some((k) => p[k] !== undefined)) {
      return { startDay: num(p.startDay, "startDay"), days: num(p.days, "days"), from: str(p.from, "from"), to: str(p.to, "to") };
    }
  }
  return { startDay: num(config.startDay, "startDay") ?? -1, days: num(config.days, "days") ?? 1 };
}

function num(value: unknown, what: string): number | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  const n = Number(value);
  if (!Number.isFinite(n)) throw new InputError(`${what} must be a number, not ${JSON.stringify(value)}`);
  return n;
}

function str(value: unknown, what: string): string | undefined {
  if (value === undefined || value === null || value === "") return undefined;
  if (typeof value !== "string") throw new InputError(`msg.payload.${what} must be a date such as 2026-11-22`);
  return value;
}
