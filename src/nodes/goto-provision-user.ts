import { InputError, PipelineError, asPipelineError, errorMessage } from "../core/errors";
import { configNode } from "../core/node/config";
import { handleInput } from "../core/node/input";
import { Lifecycle } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { showConnectionState } from "../core/node/oauth-connection";
import { StatusReporter, formatCount } from "../core/node/status";
import type { Node, NodeAPI, NodeDef, NodeMessage } from "../core/node/types";
import { GoToAdminApi, parseGoToJson } from "../goto/admin";
import type { GoToConnection } from "../goto/api";
import { ProvisionAction, Provisioner, RequestDefaults, failureStatus, itemsOf, requestsOf } from "../goto/provisioning";
import { OnceClaim, OnceRuns } from "../core/db/once";
import { runRecorder } from "../core/node/runs";

interface ProvisionUserDef extends NodeDef {
  goto?: string;
  action?: ProvisionAction | "item";
  deprovision?: "delete" | "unlicense";
  welcomeEmail?: boolean;
  [typed: string]: unknown;
}

/** The fields an item may leave to the node's settings (typed inputs: `<field>` and `<field>Type`). */
const FIELDS = ["email", "firstName", "lastName", "licenseKeys"] as const;

export = function register(RED: NodeAPI) {
  function GoToProvisionUserNode(this: Node, def: ProvisionUserDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    const status = new StatusReporter(node);
    const life = new Lifecycle(node);
    life.onClose(() => status.clear());
    const existing = config.goto ? (RED.nodes.getNode(config.goto) as GoToConnection | null) : null;
    if (existing?.connection) showConnectionState(existing.connection, status, life);
    // Each request (one user or a batch) is a run, recorded where the replicas share their tokens.
    const runs = runRecorder(node, life, "provisioning", () => (config.goto ? (RED.nodes.getNode(config.goto) as GoToConnection | null)?.sharedDatabase() : undefined));

    /** A typed-input setting's value for this message; empty settings give nothing. */
    const setting = (field: (typeof FIELDS)[number], msg: NodeMessage): Promise<unknown> => {
      const value = config[field];
      const type = String(config[`${field}Type`] || "str");
      if (value === undefined || value === "") return Promise.resolve(undefined);
      // Read here rather than by Node-RED, whose JSON.parse would cut keys of 19 digits.
      if (type === "json") return Promise.resolve(parseGoToJson(String(value)));
      return new Promise((resolve, reject) =>
        RED.util.evaluateNodeProperty(value, type, node, msg, (err, result) => (err ? reject(new InputError(`the ${field} setting could not be read: ${err.message}`)) : resolve(result))),
      );
    };

    handleInput(node, status, async (msg, send) => {
      let outcomes;
      let batch = false;
      let claim: OnceClaim | undefined;
      const run = runs.start(requestIdOf(msg));
      try {
        const goto = life.uses(configNode<GoToConnection>(RED, config.goto, "goto-credentials", "GoTo connection"));
        // With replicas on one database, a request (msg.requestId, else the message's id) runs once:
        // the others answer what it came to, or that it runs elsewhere.
        const shared = goto.sharedDatabase();
        if (shared) {
          const claimed = await new OnceRuns(await shared, `goto-provision-user:${node.id}`).claim(requestIdOf(msg));
          if ("elsewhere" in claimed) {
            const { by, running, outcome } = claimed.elsewhere;
            const kept = outcome as { output?: number; statusCode?: number; payload?: unknown } | null;
            status.ready(`done by ${by}`);
            run.details = { doneBy: by, running };
            run.end("skipped");
            if (running || !kept) send([null, Object.assign(msg, { statusCode: 409, payload: { result: "in progress", by } })]);
            else send(kept.output === 0 ? [Object.assign(msg, { statusCode: kept.statusCode, payload: kept.payload }), null] : [null, Object.assign(msg, { statusCode: kept.statusCode, payload: kept.payload })]);
            return;
          }
          claim = claimed.claim;
        }
        const defaults: RequestDefaults = { action: config.action ?? "provision" };
        for (const field of FIELDS) defaults[field] = await setting(field, msg);
        const parsed = itemsOf(msg.payload);
        batch = parsed.batch;
        const requests = requestsOf(parsed.items, defaults);
        status.busy(batch ? `0/${formatCount(requests.length)}` : "requesting");
        let shown = 0;
        const provisioner = new Provisioner({
          admin: new GoToAdminApi(goto.api("admin").withCounts(run.counts), await goto.accountKey(), { signal: life.signal }),
          deprovision: config.deprovision === "unlicense" ? "unlicense" : "delete",
          welcomeEmail: config.welcomeEmail !== false,
          signal: life.signal,
          onProgress: (done, total) => {
            if (Date.now() - shown < 250) return; // a status a person can read, not one per user
            shown = Date.now();
            status.busy(`${formatCount(done)}/${formatCount(total)}`);
          },
        });
        outcomes = await provisioner.run(requests);
      } catch (err) {
        // Nothing was done: whoever asked (an http response) gets an answer, Catch gets the error.
        await claim?.failed().catch(() => undefined);
        const error = asPipelineError(err);
        run.end("failure", error);
        send([null, Object.assign(msg, { statusCode: failureStatus(error), payload: { result: "failed", error: error.message, code: error.code } })]);
        throw error;
      }

      if (!batch) {
        const outcome = outcomes[0]!;
        run.details = { action: outcome.ok ? outcome.report.result : outcome.item.action ?? null };
        if (!outcome.ok) {
          run.end("failure", outcome.error);
          await claim?.failed().catch(() => undefined);
          send([null, Object.assign(msg, { statusCode: failureStatus(outcome.error), payload: outcome.item })]);
          throw outcome.error;
        }
        run.counts.rows = 1;
        run.end("success");
        await keep(claim, 0, 200, outcome.report);
        send([Object.assign(msg, { statusCode: 200, payload: outcome.report }), null]);
        status.ok(`${outcome.report.result}: ${outcome.report.email}`.slice(0, 40));
        return;
      }
      const failures = outcomes.filter((o) => !o.ok);
      const payload = outcomes.map((o) => (o.ok ? o.report : o.item));
      run.counts.rows = outcomes.length - failures.length;
      run.details = { items: outcomes.length, failed: failures.length };
      await keep(claim, 0, failures.length ? 207 : 200, payload);
      send([Object.assign(msg, { statusCode: failures.length ? 207 : 200, payload }), null]);
      if (failures.length) {
        const first = failures[0]!;
        const error = new PipelineError(`${formatCount(failures.length)} of ${formatCount(outcomes.length)} items failed; the first: ${first.item.email ?? "an item"}: ${first.item.error}`, {
          status: `${formatCount(failures.length)} of ${formatCount(outcomes.length)} failed`,
          code: "GW_GOTO_PROVISIONING_PARTLY_FAILED",
          partial: true,
          cause: first.ok ? undefined : first.error,
        });
        run.end(failures.length === outcomes.length ? "failure" : "partial", error);
        throw error;
      }
      run.end("success");
      status.ok(`${formatCount(outcomes.length)} users done`);
    }, { life });

    /** What a request came to, for a replica asked the same again; a failure to keep it is only logged. */
    async function keep(claim: OnceClaim | undefined, output: number, statusCode: number, payload: unknown): Promise<void> {
      await claim?.done({ output, statusCode, payload }).catch((err: unknown) => node.warn(`the outcome of this request was not kept for the other instances: ${errorMessage(err)}`));
    }
  }

  RED.nodes.registerType("goto-provision-user", GoToProvisionUserNode);
};

/** What names one request across replicas: `msg.requestId` when the flow gives one, else the message's own id. */
function requestIdOf(msg: NodeMessage): string {
  const given = (msg as { requestId?: unknown }).requestId;
  if (typeof given === "string" && given.trim()) return given.trim().slice(0, 200);
  if (typeof given === "number") return String(given);
  return String(msg._msgid ?? "");
}
