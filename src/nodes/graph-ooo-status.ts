import { ConfigError, PipelineError, asPipelineError } from "../core/errors";
import { DatabaseProvider, configNode } from "../core/node/config";
import { handleInput } from "../core/node/input";
import { Lifecycle } from "../core/node/lifecycle";
import { ConfigMigration, carriedList, migrateConfig } from "../core/node/migrate";
import { StatusReporter, formatCount, isSetupGap } from "../core/node/status";
import type { Node, NodeAPI, NodeDef, NodeMessage, SendFunction } from "../core/node/types";
import type { GraphApp } from "../graph/app";
import { UserLookupError } from "../graph/client";
import { OutOfOfficeChange, OutOfOfficeMonitor, PollResult, ThrottledCycle, changePayload, cycleSummary, isSettingsError } from "../graph/monitor";
import { clockTime, monitorStatus } from "../graph/monitor-status";
import { WatchRequest, parseWatchRequest } from "../graph/requests";
import { CycleHolder, WatchListStore } from "../graph/watch-list";
import { instanceName } from "../core/instance";
import { runRecorder } from "../core/node/runs";
import type { Run } from "../core/runs";

interface OooDef extends NodeDef {
  app: string;
  database: string;
  /** Version 1 called this `users`, a name the editor keeps for itself (it dropped the field). */
  watchedUsers: string;
  interval: string;
  readsInFlight: string;
}

const MIGRATIONS: readonly ConfigMigration[] = [
  {
    version: 2,
    up: ({ users, ...rest }) => ({ ...rest, watchedUsers: carriedList(rest.watchedUsers, users) }),
  },
];

/** The shortest polling interval: see the help for why. */
const MIN_INTERVAL_S = 15;
/** A window boundary further away than this is looked at again after the next poll. */
const MAX_WAKEUP_MS = 6 * 3600_000;

export = function register(RED: NodeAPI) {
  function GraphOooStatusNode(this: Node, def: OooDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, MIGRATIONS);
    const status = new StatusReporter(node);
    const life = new Lifecycle(node);
    const intervalS = Math.max(MIN_INTERVAL_S, Number(config.interval) || 60);
    const readsInFlight = Math.max(1, Math.floor(Number(config.readsInFlight) || 4));
    let lastPoll = "";
    let polling: Promise<PollResult> | undefined;
    let cancelWakeup: (() => void) | undefined;
    let lastCycle: PollResult | undefined;
    let aside: CycleHolder | undefined;
    /** Outlook refusing the app's reads now (told during a cycle, or left at its end). */
    let throttling: ThrottledCycle | undefined;

    const monitor = (async () => {
      const app = life.uses(configNode<GraphApp>(RED, config.app, "graph-app", "Entra ID app"));
      const db = await life.uses(configNode<DatabaseProvider>(RED, config.database, "postgres-database", "database")).database();
      // A cycle may read for as long as the interval; the users left go first in the next one.
      const m = new OutOfOfficeMonitor({
        graph: app.graph(),
        store: new WatchListStore(db, node.id),
        readsInFlight,
        budgetKey: app.budgetKey,
        cycleBudgetMs: intervalS * 1000,
        // Yellow as soon as Outlook slows the cycle down, green again once batches go through.
        onThrottling: (now) => {
          if (life.signal.aborted) return;
          if (!now && lastCycle?.throttling) lastCycle = undefined;
          throttling = now;
          showWatching(m);
        },
      });
      await m.load();
      return m;
    })();
    monitor.catch(() => undefined); // reported by whoever awaits it

    // Each cycle this instance runs is a run; a cycle another replica ran is not recorded here (it records its own).
    const runs = runRecorder(node, life, "ooo-monitor", () => (config.database ? (RED.nodes.getNode(config.database) as DatabaseProvider | null)?.database() : undefined));

    const changes = (list: OutOfOfficeChange[]): NodeMessage[] => list.map((c) => ({ topic: c.email, payload: changePayload(c) }));
    const showWatching = (m: OutOfOfficeMonitor) => {
      const shown = monitorStatus({ watched: m.users.length, out: m.outOfOffice, cycle: lastCycle, throttling, aside, lastPoll });
      status[shown.state](shown.text);
    };
    const report = (err: unknown, what: string) => {
      const error = asPipelineError(err);
      status.error(error.status);
      if (!isSetupGap(error)) node.error(error, { topic: what, payload: { error: error.message } });
    };

    const scheduleWakeup = (m: OutOfOfficeMonitor) => {
      cancelWakeup?.();
      const at = m.nextWakeup();
      if (at === undefined) return;
      const delay = at - Date.now();
      if (delay > MAX_WAKEUP_MS) return;
      cancelWakeup = life.timeout(async () => {
        const opened = await m.checkWindows();
        if (opened.length) node.send([changes(opened), null, null]);
        showWatching(m);
        scheduleWakeup(m);
      }, Math.max(0, delay) + 50);
    };

    const poll = (due: boolean, starting = false): Promise<PollResult> => {
      // A close aborts the cycle's reads and waits for it to store what it learned.
      polling ??= life.work((async () => {
        const m = await monitor;
        const run = runs.start();
        let result: PollResult;
        try {
          result = await m.poll(life.signal, { due, starting, counts: run.counts });
        } catch (err) {
          run.end("failure", err);
          throw err;
        }
        if (!result.doneBy) endCycle(run, result);
        if (result.doneBy) {
          // This process polled under the node deployed before: its own cycle, not another's.
          if (result.doneBy.by !== instanceName()) aside = result.doneBy;
          else if (result.doneBy.finishedAt) lastPoll = clockTime(result.doneBy.finishedAt);
          showWatching(m);
          scheduleWakeup(m);
          return result;
        }
        aside = undefined;
        lastCycle = result;
        throttling = result.throttling;
        const timed = await m.checkWindows();
        lastPoll = clockTime(new Date());
        const out = [...changes(result.changes), ...changes(timed)];
        node.send([out.length ? out : null, null, null, { topic: "cycle", payload: cycleSummary(result) }]);
        // A watched user Graph no longer shows (gone, mailbox removed, access taken away): once per problem.
        for (const problem of result.problems) node.error(problem.error, { topic: problem.email, payload: { email: problem.email, error: problem.error.problem } });
        for (const r of result.refused) node.error(r.error, refusal(r.email, r.error));
        showWatching(m);
        scheduleWakeup(m);
        return result;
      })().finally(() => {
        polling = undefined;
      }));
      return polling;
    };

    /** A cycle's run: failed when it read nobody (or the app's settings are wrong), partial when it missed some. */
    function endCycle(run: Run, result: PollResult): void {
      run.counts.rows = result.read;
      // Mailbox reads throttled inside a batch are 429s too, though the batch itself was answered 200.
      run.counts.http429 += result.throttled;
      run.details = { watched: result.watched, notRead: result.notRead.length, batches: result.batches, throttled: result.throttled, errors: result.errors, changes: result.changes.length };
      const failure = result.failure;
      if (failure && (isSettingsError(failure) || (result.read === 0 && result.watched > 0))) run.end("failure", failure);
      else if (failure || result.notRead.length > 0) {
        const reasons = [...new Set(result.notRead.map((u) => u.reason))].join(", ");
        run.end("partial", failure ?? new PipelineError(`${formatCount(result.notRead.length)} of ${formatCount(result.watched)} users not read (${reasons}); they go first in the next cycle`, { code: "GW_GRAPH_NOT_READ", partial: true }));
      } else run.end("success");
    }

    // A cycle that failed on a timer goes to Catch; its status (yellow or red) is already set.
    function pollOnTimer(starting = false): Promise<void> {
      return poll(true, starting).then(
        (result) => {
          if (result.failure && !isSetupGap(result.failure)) node.error(result.failure, { topic: "poll", payload: cycleSummary(result) });
        },
        (err) => report(err, "poll"),
      );
    }

    // Start: the list from the settings when there is one, then poll on the interval.
    life.timeout(async () => {
      try {
        const m = await monitor;
        const listed = String(config.watchedUsers ?? "").split(/[\s,;]+/).filter(Boolean);
        if (listed.length) {
          const result = await m.replace(listed);
          if (result.changes.length) node.send([changes(result.changes), null, null]);
          for (const r of result.refused) node.error(r.error, { topic: r.email, payload: { email: r.email } });
        }
        showWatching(m);
      } catch (err) {
        report(err, "poll");
        return;
      }
      await pollOnTimer(true);
    }, 100);
    life.interval(() => pollOnTimer(), intervalS * 1000);
    life.onClose(() => status.clear());

    handleInput(node, status, async (msg, send) => {
      let request;
      try {
        request = parseWatchRequest(msg.topic, msg.payload);
      } catch (err) {
        // Answered (400, for an http response) and reported.
        send([null, null, answer(msg, 400, { error: "invalid request", reason: asPipelineError(err).message })]);
        throw err;
      }
      if (request.kind === "poll") {
        const result = await poll(false);
        if (result.failure) throw result.failure;
        return;
      }
      try {
        await answerRequest(request, msg, send);
      } catch (err) {
        // Whoever asked gets an answer (503) while Catch nodes get the failure.
        const error = asPipelineError(err);
        send([null, null, answer(msg, 503, { error: "unavailable", reason: error.message })]);
        throw error;
      }
    }, { life });

    async function answerRequest(request: Exclude<WatchRequest, { kind: "poll" }>, msg: NodeMessage, send: SendFunction): Promise<void> {
      const m = await monitor;
      // Another replica may have changed the list since.
      await m.load();
      switch (request.kind) {
        case "list":
          send([null, answer(msg, 200, { watching: m.users.map((u) => ({ email: u.email, userId: u.userId, outOfOffice: u.observation?.outOfOffice ?? null })) }), null]);
          return;
        case "replace": {
          const r = await m.replace(request.emails);
          const payload = { watching: m.users.map((u) => u.email), added: r.added, removed: r.removed, refused: r.refused.map((x) => ({ email: x.email, reason: x.error.message })), retrying: r.pending };
          send([changes(r.changes), answer(msg, r.refused.length || r.pending.length ? 207 : 200, payload), null]);
          break;
        }
        case "watch":
          try {
            const { entry, change } = await m.watch(request.email);
            send([change ? changes([change]) : null, answer(msg, 200, { email: request.email, status: "True", watching: true, userId: entry.userId, displayName: entry.displayName }), null]);
          } catch (err) {
            if (!(err instanceof UserLookupError)) throw err;
            send([null, null, Object.assign(msg, refusal(request.email, err))]);
          }
          break;
        case "unwatch": {
          const removed = await m.unwatch(request.email);
          send([null, answer(msg, 200, { email: request.email, status: "False", watching: false, wasWatched: removed }), null]);
          break;
        }
      }
      showWatching(m);
      scheduleWakeup(m);
    }
  }

  RED.nodes.registerType("graph-ooo-status", GraphOooStatusNode);
};

function answer(msg: NodeMessage, statusCode: number, payload: unknown): NodeMessage {
  return Object.assign(msg, { statusCode, payload });
}

function refusal(email: string, error: PipelineError): NodeMessage {
  const problem = error instanceof UserLookupError ? error.problem : error instanceof ConfigError ? "configuration" : "error";
  return { topic: email, statusCode: error.httpStatus ?? 500, payload: { email, error: problem, reason: error.message } };
}
