import { promises as fs } from "node:fs";
import { ActionBudget } from "../connections/action-budget";
import { AuditEvent, ConnectionBoard } from "../connections/board";
import type { BoardPolicy } from "../connections/policy";
import { Connection, parseConnections, parseUsers } from "../connections/sources";
import { ConfigError, InputError, asPipelineError } from "../core/errors";
import { DatabaseProvider, configNode } from "../core/node/config";
import { handleInput } from "../core/node/input";
import { Lifecycle } from "../core/node/lifecycle";
import { ConfigMigration, carriedList, migrateConfig } from "../core/node/migrate";
import { StatusReporter } from "../core/node/status";
import { formatDuration, formatInZone, ianaZone } from "../core/time";
import type { Node, NodeAPI, NodeDef, NodeMessage } from "../core/node/types";

interface BoardDef extends NodeDef {
  database: string;
  board: string;
  policy: BoardPolicy;
  maxPerRow: string;
  connections: string;
  connectionsFile: string;
  boardUsers: string;
  usersFile: string;
  timeZone: string;
}

/** Version 2 names the users `boardUsers`: the editor keeps `users` for itself. */
const BOARD_MIGRATIONS: readonly ConfigMigration[] = [
  {
    version: 2,
    up: ({ users, ...rest }) => ({ ...rest, boardUsers: carriedList(rest.boardUsers, users) }),
  },
];

/** Per dashboard connection: a person's clicks always fit, a script's flood does not. */
const ACTIONS_AT_ONCE = 20;
const ACTIONS_PER_SECOND = 1;
/** A flood is logged once a minute at most, however many connections take part. */
const FLOOD_REPORT_MS = 60_000;

/** Topics that once set the lists by message, now refused: the dashboard's output reaches this input. */
const LIST_TOPICS = new Set(["connections", "users"]);

export = function register(RED: NodeAPI) {
  function ConnectionBoardNode(this: Node, def: BoardDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, BOARD_MIGRATIONS);
    const status = new StatusReporter(node);
    const life = new Lifecycle(node);
    const zone = ianaZone(config.timeZone || "") ?? Intl.DateTimeFormat().resolvedOptions().timeZone;

    const publish = coalesced(async (board?: ConnectionBoard) => {
      const snapshot = await (board ?? (await opening)).snapshot();
      const connected = snapshot.rows.filter((r) => r.occupants.length > 0).length;
      // A board nobody may use is not ready, whatever its rows say.
      if (snapshot.users.length === 0) status.warn(`no users: list them in the node · ${connected}/${snapshot.rows.length} connected`);
      else status.ready(`${connected}/${snapshot.rows.length} connected`);
      node.send([{ topic: "board", payload: snapshot }, null, null]);
    }, (err) => node.error(asPipelineError(err), { topic: "board" }));

    const opening = (async () => {
      if (config.timeZone && !ianaZone(config.timeZone)) throw new ConfigError(`"${config.timeZone}" is not a time zone`);
      const db = await configNode<DatabaseProvider>(RED, config.database, "postgres-database", "database").database();
      const board = new ConnectionBoard(db, {
        board: config.board || node.id,
        policy: config.policy || "exclusive",
        maxPerRow: Number(config.maxPerRow) || 2,
        formatTime: (ms) => formatInZone(ms, zone).slice(11, 16),
      });
      await loadLists(board);
      // Every change, made here or by another instance on the same database, goes to the dashboard.
      life.onClose(await board.subscribe(() => publish.request()));
      await publish.now(board);
      return board;
    })();
    opening.catch((err) => {
      const error = asPipelineError(err);
      status.error(error.status);
      node.error(error, { topic: "board", payload: { error: error.message } });
    });

    /** The lists from the node's settings or the files they name: only the flow's author sets them. */
    async function loadLists(board: ConnectionBoard): Promise<void> {
      const connections = await listFromSettings(config.connections, config.connectionsFile, parseConnections);
      if (connections) sendAudit(await board.setConnections(connections, "the board's settings"));
      const users = await listFromSettings(config.boardUsers, config.usersFile, parseUsers);
      if (users) await board.setUsers(users);
    }

    function sendAudit(events: AuditEvent[]): void {
      if (events.length === 0) return;
      node.send([null, events.map((e) => auditMessage(e, zone)), null]);
    }

    const budget = new ActionBudget({ burst: ACTIONS_AT_ONCE, perSecond: ACTIONS_PER_SECOND });
    let floodReportedAt = -Infinity;
    let refusedSinceReport = 0;

    handleInput(node, status, async (msg, send) => {
      // Judged on arrival, before any database work: a flood costs nothing and writes no audit row.
      const client = dashboardClient(msg);
      const verdict = client ? budget.take(client.socketId) : "allowed";
      if (verdict !== "allowed") {
        refusedSinceReport++;
        if (verdict === "flood-started") {
          if (Date.now() - floodReportedAt >= FLOOD_REPORT_MS) {
            floodReportedAt = Date.now();
            status.warn("refusing a flood of actions");
            node.warn(
              `a dashboard connection (${client!.socketIp ?? "unknown address"}) sent more than ${ACTIONS_AT_ONCE} board messages at once: ` +
                `its messages are refused until it slows down to ${ACTIONS_PER_SECOND} a second (${refusedSinceReport} refused since the last report)`,
            );
            refusedSinceReport = 0;
          }
          // The browser that asked hears it once; the rest of its flood is dropped without a word.
          send([null, null, Object.assign(msg, { topic: "refused", payload: { code: "too-many-actions", message: "too many actions from this browser: wait a few seconds and try again" } })]);
        }
        return;
      }
      const board = await opening;
      // This input is the dashboard's: whatever a browser sends can arrive here. It may act on a
      // row as a listed user; the lists come only from the settings and their files ("reload").
      if (typeof msg.topic === "string" && LIST_TOPICS.has(msg.topic)) {
        throw new InputError(`msg.topic "${msg.topic}" is not taken here: the board's lists come from its settings or files; send msg.topic "reload" to read the files again`);
      }
      if (msg.topic === "reload") {
        await loadLists(board);
        return;
      }
      const action = boardAction(msg);
      if (!action) {
        await publish.now(board);
        return;
      }
      const outcome = await board.act(action.row, { action: action.action, user: action.user });
      if (outcome.ok) {
        if (outcome.audit.length) send([null, outcome.audit.map((e) => auditMessage(e, zone)), null]);
        return;
      }
      // The refusal goes back to the one browser that asked (msg._client), never silently dropped.
      send([null, null, Object.assign(msg, { topic: outcome.code === "takeover-needed" ? "confirm-takeover" : "refused", payload: { ...action.row, user: action.user, code: outcome.code, message: outcome.message } })]);
    }, { connectionTest: false }); // the dashboard feeds this input: no browser may run the database's test
  }

  RED.nodes.registerType("connection-board", ConnectionBoardNode);
};

/** The dashboard connection a message came from (Dashboard 2.0 sets `socketId` itself, after the browser's fields). */
function dashboardClient(msg: NodeMessage): { socketId: string; socketIp?: string } | undefined {
  const client = msg._client as { socketId?: unknown; socketIp?: unknown } | undefined;
  if (!client || typeof client.socketId !== "string" || !client.socketId) return undefined;
  return { socketId: client.socketId, socketIp: typeof client.socketIp === "string" ? client.socketIp : undefined };
}

/** The dashboard's action: `{ action: "connect" | "release" | "takeover", main, sub, user }`. */
function boardAction(msg: NodeMessage): { action: "connect" | "release" | "takeover"; row: Connection; user: string } | undefined {
  const p = msg.payload as Record<string, unknown> | undefined;
  if (!p || typeof p !== "object" || p.action === undefined) return undefined;
  if (p.action !== "connect" && p.action !== "release" && p.action !== "takeover") throw new InputError(`unknown board action "${String(p.action).slice(0, 40)}"`);
  if (typeof p.main !== "string" || typeof p.sub !== "string") throw new InputError("a board action needs main and sub");
  // A dashboard that knows who is logged in (msg._client.user) speaks for them; otherwise the browser's choice.
  const client = (msg._client as { user?: { name?: string; username?: string } } | undefined)?.user;
  const user = client?.name ?? client?.username ?? (typeof p.user === "string" ? p.user : "");
  return { action: p.action, row: { main: p.main, sub: p.sub }, user };
}

function auditMessage(e: AuditEvent, zone: string): NodeMessage {
  return {
    topic: "audit",
    date: new Date(e.releasedAt).toISOString(),
    payload: {
      main: e.main,
      sub: e.sub,
      user: e.user,
      connectedAt: formatInZone(e.connectedAt, zone),
      releasedAt: formatInZone(e.releasedAt, zone),
      duration: formatDuration(e.durationSeconds * 1000),
      releasedBy: e.releasedBy,
      reason: e.reason,
    },
  };
}

/** The list from the node's settings: the text field, else the file it names, else none. */
async function listFromSettings<T>(text: string | undefined, file: string | undefined, parse: (text: string) => T[]): Promise<T[] | undefined> {
  if (text?.trim()) return parse(text);
  if (file?.trim()) {
    try {
      return parse(await fs.readFile(file.trim(), "utf8"));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") throw new ConfigError(`the file ${file} does not exist`);
      throw err;
    }
  }
  return undefined;
}

/**
 * One run of `task` at a time; requests during a run make exactly one more run after it, so a
 * burst of changes sends the newest state once instead of once per change.
 */
function coalesced<A>(task: (arg?: A) => Promise<void>, onError: (err: unknown) => void) {
  let running: Promise<void> | undefined;
  let again = false;
  const run = (arg?: A): Promise<void> => {
    running = task(arg)
      .catch(onError)
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          void run();
        }
      });
    return running;
  };
  return {
    request(): void {
      if (running) again = true;
      else void run();
    },
    now(arg?: A): Promise<void> {
      return running ? running.then(() => run(arg)) : run(arg);
    },
  };
}
