import { promises as fs, mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { BlobServiceClient } from "@azure/storage-blob";
import pg from "pg";
import { request } from "undici";
import { TokenAuthority } from "../../src/auth/jwt";
import { signingKeys } from "../../src/auth/keys";
import { UserList } from "../../src/auth/users";
import { DEMO_USER } from "../../src/demo/profiles/jwt-auth-key";
import { DemoEnvironment, FlowNode, demoFlows, loadProfiles, secretKeeper } from "../../src/demo/environment";
import { Sandbox } from "../../src/sandbox";
import { AZURITE_ACCOUNT, Azurite } from "../../src/sandbox/azurite";
import { SmtpSink, mailHeader } from "../../src/sandbox/smtp-sink";
import { eventually } from "../support/node-red";
import { DeploymentType, NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { FaultMode, FaultProxy } from "./proxy";

/** The six pipelines, by the flow file that ships each. */
export const PIPELINES = {
  "call-logs": "goto-call-logs.json",
  provisioning: "goto-provisioning.json",
  "teamleader-sync": "teamleader-sync.json",
  ooo: "outlook-ooo-monitor.json",
  board: "support-board.json",
  "mail-relay": "mail-relay.json",
} as const;
export type Pipeline = keyof typeof PIPELINES;

/** What the package talks to, each behind a proxy of its own. */
export type Neighbour = "postgres" | "azurite" | "smtp" | "goto" | "teamleader" | "microsoft";

export interface NodeStatus {
  fill?: string;
  shape?: string;
  text?: string;
}

/** One test's figures: a fault on a neighbour of a pipeline, and what came of it. */
export interface FaultRow {
  pipeline: Pipeline;
  neighbour: Neighbour | "embedded";
  fault: string;
  /** 1 when the Node-RED process ended during the test. */
  node_red_exits: number;
  /** From the end of the fault to the pipeline back to normal with its outcome complete. */
  recovery_seconds: number | null;
  lost: number | null;
  duplicated: number | null;
  passed: boolean;
  error?: string;
}

/** What the monitoring nodes deployed beside the pipeline saw. */
export interface Observed {
  statuses: Record<string, NodeStatus>;
  errors: Array<{ node: string; message: string }>;
  completed: Array<{ node: string; payload: unknown }>;
}

export interface RigOptions {
  pipelines: Pipeline[];
  /** The PostgreSQL server at 127.0.0.1:5432 through a proxy (a fresh database), or the embedded server (the default). */
  database?: "server" | "embedded";
  /** Nodes whose finished messages are recorded too (debug nodes always are). */
  completions?: string[];
}

const flowsDir = path.join(__dirname, "..", "..", "..", "flows");

/**
 * The shipped flows of some pipelines, deployed as `npm start` deploys them into a real Node-RED
 * process, with every neighbour (PostgreSQL, Azurite, the SMTP server, the sandbox's GoTo,
 * Teamleader and Microsoft) reached through a FaultProxy. Beside each pipeline's tab, a status, a
 * catch and complete nodes record what a person would see, readable at GET /faults/observed.
 */
export class FaultRig {
  readonly proxies = {} as Record<Neighbour, FaultProxy>;
  sandbox!: Sandbox;
  azurite!: Azurite;
  smtp!: SmtpSink;
  testDb?: TestDatabase;
  red!: NodeRedProcess;
  flows: FlowNode[] = [];
  stateDir!: string;
  /** Set when the Node-RED process ended by itself. */
  exit?: { code: number | null; signal: string | null };
  output = "";

  static async start(options: RigOptions): Promise<FaultRig> {
    const rig = new FaultRig();
    try {
      await rig.begin(options);
    } catch (err) {
      await rig.stop();
      throw err;
    }
    return rig;
  }

  private completions: string[] = [];

  private async begin(options: RigOptions): Promise<void> {
    this.completions = options.completions ?? [];
    this.stateDir = mkdtempSync(path.join(os.tmpdir(), "gw-faults-"));
    this.sandbox = new Sandbox();
    await this.sandbox.listen();
    this.azurite = new Azurite();
    await this.azurite.start();
    this.smtp = new SmtpSink();
    await this.smtp.listen();
    const sandboxPort = Number(new URL(this.sandbox.url).port);
    const targets: Record<Neighbour, number> = {
      postgres: Number(process.env.PGPORT ?? 5432),
      azurite: this.azurite.port,
      smtp: this.smtp.port,
      goto: sandboxPort,
      teamleader: sandboxPort,
      microsoft: sandboxPort,
    };
    for (const [name, port] of Object.entries(targets) as Array<[Neighbour, number]>) {
      this.proxies[name] = new FaultProxy({ host: name === "postgres" ? process.env.PGHOST : undefined, port }, name);
      await this.proxies[name].start();
    }
    if (options.database === "server") this.testDb = await createTestDatabase("gw_faults");

    this.red = await startNodeRed({ userDir: path.join(this.stateDir, "node-red"), env: { TZ: "UTC" } });
    this.red.child.on("exit", (code, signal) => (this.exit = { code, signal }));
    this.flows = await this.shippedFlows(options.pipelines);
    await this.red.deploy([...this.flows, ...monitoringNodes(this.flows, this.completions)]);
    // The flows have started once their routes answer.
    await eventually(() => this.observed().then(() => true), 30_000, "the deployed flows to start");
  }

  /** The pipelines' flow files as `npm start` fills them in, each neighbour's address being its proxy. */
  private async shippedFlows(pipelines: Pipeline[]): Promise<FlowNode[]> {
    const dir = path.join(this.stateDir, "flows");
    await fs.mkdir(dir, { recursive: true });
    for (const p of pipelines) await fs.copyFile(path.join(flowsDir, PIPELINES[p]), path.join(dir, PIPELINES[p]));
    const via = (neighbour: Neighbour) => Object.create(this.sandbox, { url: { get: () => this.proxies[neighbour].url } }) as Sandbox;
    const base: DemoEnvironment = {
      stateDir: this.stateDir,
      sandbox: this.sandbox,
      azurite: {
        blobUrl: `${this.proxies.azurite.url}/${AZURITE_ACCOUNT.name}`,
        connectionString: `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT.name};AccountKey=${AZURITE_ACCOUNT.key};BlobEndpoint=${this.proxies.azurite.url}/${AZURITE_ACCOUNT.name};`,
        accountName: AZURITE_ACCOUNT.name,
        accountKey: AZURITE_ACCOUNT.key,
      },
      smtp: { host: "127.0.0.1", port: this.proxies.smtp.port, dir: path.join(this.stateDir, "mail") },
      nodeRedUrl: this.red.url,
      databaseUrl: this.testDb ? `postgres://${this.testDb.connection.user}@127.0.0.1:${this.proxies.postgres.port}/${this.testDb.name}` : undefined,
      secret: secretKeeper(path.join(this.stateDir, "secrets.json")),
    };
    const sandboxOf: Record<string, Neighbour> = { "goto-credentials": "goto", "teamleader-connection": "teamleader", "graph-app": "microsoft" };
    const profiles = new Map(
      [...loadProfiles()].map(([type, profile]) => [type, (node: FlowNode, env: DemoEnvironment) => profile(node, sandboxOf[type] ? { ...env, sandbox: via(sandboxOf[type]!) } : env)] as const),
    );
    const flows = await demoFlows(dir, base, profiles);
    // The account's drift changes records every minute: an exact comparison needs them still.
    this.sandbox.teamleader.stopDrift();
    return flows;
  }

  /** Puts a neighbour's proxy in a fault mode (pass ends the fault). */
  fault(neighbour: Neighbour, mode: FaultMode, options?: { bytesPerSecond?: number }): Promise<void> {
    return this.proxies[neighbour].set(mode, options);
  }

  /**
   * A fault on a neighbour for FAULT_MS, Node-RED checked alive meanwhile; returns when it ended.
   * Throws if no connection went through the fault (it did not land mid-run).
   */
  async faultWindow(neighbour: Neighbour, mode: FaultMode, options: { ms?: number; bytesPerSecond?: number; during?: () => void } = {}): Promise<number> {
    const proxy = this.proxies[neighbour];
    const touched = proxy.touched;
    await proxy.set(mode, { bytesPerSecond: options.bytesPerSecond ?? 4096 });
    options.during?.();
    await hold(options.ms);
    await this.assertAlive();
    const hit = proxy.touched - touched;
    await proxy.heal();
    if (hit === 0) throw new Error(`the ${mode} fault on ${neighbour} touched no connection: it did not land mid-run`);
    return Date.now();
  }

  /** Times the Node-RED process ended by itself (each revived). */
  exits = 0;
  private row?: FaultRow;
  private exitsBefore = 0;

  /** Starts a test's figures (the bench reads them from GW_FAULTS_RESULTS). */
  measure(pipeline: Pipeline, neighbour: FaultRow["neighbour"], fault: string): void {
    this.row = { pipeline, neighbour, fault, node_red_exits: 0, recovery_seconds: null, lost: null, duplicated: null, passed: false };
    this.exitsBefore = this.exits;
  }

  /** Records what the test found: time since the fault ended, and what was lost or done twice. */
  note(healedAt: number, outcome: { lost?: number; missing?: number; duplicated?: number; extra?: number }): void {
    if (!this.row) return;
    this.row.recovery_seconds = Math.round((Date.now() - healedAt) / 100) / 10;
    this.row.lost = (outcome.lost ?? 0) + (outcome.missing ?? 0);
    this.row.duplicated = (outcome.duplicated ?? 0) + (outcome.extra ?? 0);
  }

  /** Ends a test's figures (call in afterEach): whether Node-RED exited, whether it passed. */
  async finish(test: Mocha.Test | undefined): Promise<void> {
    const row = this.row;
    this.row = undefined;
    if (!row) return;
    row.node_red_exits = this.exits - this.exitsBefore + (this.exit || (this.red && this.red.child.exitCode !== null) ? 1 : 0);
    row.passed = test?.state === "passed";
    if (test?.err) row.error = test.err.message.split("\n")[0]!.slice(0, 200);
    if (process.env.GW_FAULTS_RESULTS) await fs.appendFile(process.env.GW_FAULTS_RESULTS, `${JSON.stringify(row)}\n`);
  }

  /**
   * After a test that ended Node-RED, a new process on the same user folder with the same flows,
   * so that the next test starts whole. Returns whether it had to.
   */
  async revive(): Promise<boolean> {
    if (!this.exit && this.red.child.exitCode === null && this.red.child.signalCode === null) return false;
    this.exits++;
    this.exit = undefined;
    await this.healAll();
    // On the same port: the flows reach this Node-RED at its address (the out-of-office mediator).
    this.red = await startNodeRed({ userDir: path.join(this.stateDir, "node-red"), port: this.red.port, env: { TZ: "UTC" } });
    this.red.child.on("exit", (code, signal) => (this.exit = { code, signal }));
    await this.red.deploy([...this.flows, ...monitoringNodes(this.flows, this.completions)]);
    await eventually(() => this.observed().then(() => true), 30_000, "the deployed flows to start");
    return true;
  }

  /** Deploys the pipelines again with the monitoring nodes, as the editor deploys `kind`; `change` edits the flows first. */
  async redeploy(kind: DeploymentType, change: (flows: FlowNode[]) => FlowNode[] = (flows) => flows): Promise<void> {
    this.flows = change(this.flows);
    await this.red.deploy([...this.flows, ...monitoringNodes(this.flows, this.completions)], kind);
  }

  /** Every session of Node-RED's on the test database terminated (`during` runs first); returns when. */
  async terminateAll(during: () => void = () => undefined): Promise<number> {
    during();
    if ((await this.terminateBackends()) === 0) throw new Error("no session of Node-RED's to terminate");
    await this.assertAlive();
    return Date.now();
  }

  /** A restart of the database server: connections refused and every live one reset, for FAULT_MS; returns when it is back. */
  async restartDatabase(during: () => void = () => undefined): Promise<number> {
    await this.fault("postgres", "refuse");
    during();
    await hold();
    await this.assertAlive();
    await this.fault("postgres", "pass");
    return Date.now();
  }

  /** How many times each message of `ids` (the relay's answers) reached the SMTP server. */
  deliveries(ids: string[]): { lost: number; duplicated: number } {
    const byId = new Map(ids.map((id) => [id, 0]));
    for (const mail of this.smtp.received) {
      const id = /<([^@>]+)@/.exec(mailHeader(mail.raw, "Message-ID") ?? "")?.[1];
      if (id && byId.has(id)) byId.set(id, byId.get(id)! + 1);
    }
    const counts = [...byId.values()];
    return { lost: counts.filter((n) => n === 0).length, duplicated: counts.reduce((n, c) => n + Math.max(0, c - 1), 0) };
  }

  /** Ends every fault. */
  async healAll(): Promise<void> {
    for (const proxy of Object.values(this.proxies)) await proxy.heal();
  }

  /** Throws unless the Node-RED process runs and its admin API answers 200. */
  async assertAlive(): Promise<void> {
    if (this.exit || this.red.child.exitCode !== null) throw new Error(`Node-RED exited (${JSON.stringify(this.exit ?? this.red.child.exitCode)})`);
    let res;
    try {
      res = await request(`${this.red.url}/settings`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
      await res.body.dump();
    } catch (err) {
      // A process that is going away stops answering first: say which it is.
      const exited = await eventually(() => this.exit, 2000, "exit").catch(() => undefined);
      throw new Error(exited ? `Node-RED exited (${JSON.stringify(exited)})` : `Node-RED's /settings did not answer: ${(err as Error).message}`);
    }
    if (res.statusCode !== 200) throw new Error(`Node-RED's /settings answered ${res.statusCode}`);
  }

  /** What the monitoring nodes saw. */
  async observed(): Promise<Observed> {
    const res = await request(`${this.red.url}/faults/observed`, { headersTimeout: 10_000, bodyTimeout: 10_000 });
    if (res.statusCode !== 200) throw new Error(`GET /faults/observed answered ${res.statusCode}: ${await res.body.text()}`);
    return (await res.body.json()) as Observed;
  }

  /** Forgets the errors and completions seen so far (statuses stay). */
  async forget(): Promise<void> {
    const res = await request(`${this.red.url}/faults/observed`, { method: "DELETE" });
    await res.body.dump();
  }

  /** Forgets the finished messages of one node. */
  async forgetCompletion(node: string): Promise<void> {
    const res = await request(`${this.red.url}/faults/observed?completed=${encodeURIComponent(node)}`, { method: "DELETE" });
    await res.body.dump();
  }

  /** The status of a node now. */
  async status(id: string): Promise<NodeStatus | undefined> {
    return (await this.observed()).statuses[id];
  }

  /** Waits until `check` holds of what was observed, with the process alive all along. */
  async until<T>(check: (o: Observed) => T | undefined | false | Promise<T | undefined | false>, timeoutMs: number, what: string): Promise<T> {
    let last: Observed | undefined;
    try {
      return await eventually(async () => {
        await this.assertAlive();
        return check((last = await this.observed()));
      }, timeoutMs, what);
    } catch (err) {
      // What a person would have seen: the statuses and the Catch messages.
      const seen = last ? ` (statuses ${JSON.stringify(Object.fromEntries(Object.entries(last.statuses).map(([id, st]) => [id, st.text])))}; errors ${JSON.stringify(last.errors.slice(-3))})` : "";
      throw new Error(`${(err as Error).message}${seen}`);
    }
  }

  /** Presses an inject node's button, with `payload` instead of its own when given. */
  async inject(id: string, payload?: unknown): Promise<void> {
    const body = payload === undefined ? undefined : JSON.stringify({ __user_inject_props__: [{ p: "payload", v: JSON.stringify(payload), vt: "json" }] });
    const res = await request(`${this.red.url}/inject/${id}`, { method: "POST", headers: { "content-type": "application/json" }, body });
    await res.body.dump();
    if (res.statusCode !== 200) throw new Error(`inject ${id} answered ${res.statusCode}`);
  }

  /** The demo user's token from the pipeline's login endpoint, as the README shows. */
  async demoToken(): Promise<string> {
    const secrets = JSON.parse(await fs.readFile(path.join(this.stateDir, "secrets.json"), "utf8")) as Record<string, string>;
    const basic = Buffer.from(`demo:${secrets["demo-user-password"]}`).toString("base64");
    const res = await request(`${this.red.url}/api/loginUser`, { method: "POST", headers: { authorization: `Basic ${basic}` } });
    if (res.statusCode !== 200) throw new Error(`login answered ${res.statusCode}: ${await res.body.text()}`);
    return ((await res.body.json()) as { token: string }).token;
  }

  /** The demo user's token for the key nodes of issuer node-red, audience `audience`, signed with the demo's secret. */
  async tokenFor(audience = "api"): Promise<string> {
    const secrets = JSON.parse(await fs.readFile(path.join(this.stateDir, "secrets.json"), "utf8")) as Record<string, string>;
    const users = new UserList(`${DEMO_USER}:${secrets["demo-user-password-hash"]}`);
    const authority = new TokenAuthority({ keys: signingKeys("HS256", { secret: secrets[`jwt-secret:node-red/${audience}`] }), users, issuer: "node-red", audience });
    return authority.issue(DEMO_USER, { lifetimeS: 3600 }).token;
  }

  /** The test database, straight (not through the proxy). */
  async query<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, values: unknown[] = []): Promise<R[]> {
    const client = new pg.Client(this.testDb!.connection);
    client.on("error", () => undefined);
    await client.connect();
    try {
      return (await client.query<R>(sql, values)).rows;
    } finally {
      await client.end();
    }
  }

  /** Ends every session of Node-RED's on the test database (an administrator's pg_terminate_backend). */
  async terminateBackends(): Promise<number> {
    const rows = await this.query<{ pid: number }>(
      "SELECT pg_terminate_backend(pid) AS pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()",
    );
    return rows.length;
  }

  /** A blob's text in Azurite (straight), or undefined when it is absent. */
  async blob(container: string, name: string): Promise<string | undefined> {
    const client = BlobServiceClient.fromConnectionString(this.azurite.connectionString).getContainerClient(container).getBlockBlobClient(name);
    if (!(await client.exists())) return undefined;
    return (await client.downloadToBuffer()).toString("utf8");
  }

  async stop(): Promise<void> {
    await this.red?.stop().catch(() => undefined);
    for (const proxy of Object.values(this.proxies)) await proxy.stop();
    await this.smtp?.close().catch(() => undefined);
    await this.azurite?.stop().catch(() => undefined);
    await this.sandbox?.close().catch(() => undefined);
    await this.testDb?.drop().catch(() => undefined);
    await fs.rm(this.stateDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/**
 * On each tab: a status node and a catch node for all its nodes and a complete node for each of
 * its debug nodes, keeping what they see in global context; and one GET/DELETE /faults/observed.
 */
function monitoringNodes(flows: FlowNode[], completions: string[]): FlowNode[] {
  const tabs = flows.filter((n) => n.type === "tab").map((t) => t.id);
  const nodes: FlowNode[] = [];
  const record = (id: string, z: string, func: string): FlowNode => ({ id, type: "function", z, name: "record", func, outputs: 0, x: 0, y: 0, wires: [] });
  for (const z of tabs) {
    nodes.push({ id: `${z}-faults-status`, type: "status", z, scope: null, x: 0, y: 0, wires: [[`${z}-faults-status-rec`]] });
    nodes.push(record(`${z}-faults-status-rec`, z, "const s = global.get('faults.statuses') || {}; s[msg.status.source.id] = msg.status; global.set('faults.statuses', s); return null;"));
    nodes.push({ id: `${z}-faults-catch`, type: "catch", z, scope: null, uncaught: false, x: 0, y: 0, wires: [[`${z}-faults-catch-rec`]] });
    nodes.push(
      record(`${z}-faults-catch-rec`, z, "const e = global.get('faults.errors') || []; e.push({ node: msg.error.source && msg.error.source.id, message: msg.error.message }); global.set('faults.errors', e); return null;"),
    );
    for (const debug of flows.filter((n) => n.z === z && (n.type === "debug" || completions.includes(n.id)))) {
      nodes.push({ id: `${debug.id}-faults-done`, type: "complete", z, scope: [debug.id], uncaught: false, x: 0, y: 0, wires: [[`${debug.id}-faults-done-rec`]] });
      nodes.push(
        record(
          `${debug.id}-faults-done-rec`,
          z,
          `const c = global.get('faults.completed') || []; c.push({ node: ${JSON.stringify(debug.id)}, payload: msg.payload }); global.set('faults.completed', c); return null;`,
        ),
      );
    }
  }
  const z = tabs[0]!;
  nodes.push({ id: "faults-observed-in", type: "http in", z, url: "/faults/observed", method: "get", x: 0, y: 0, wires: [["faults-observed-read"]] });
  nodes.push({
    id: "faults-observed-read",
    type: "function",
    z,
    func: "msg.payload = { statuses: global.get('faults.statuses') || {}, errors: global.get('faults.errors') || [], completed: global.get('faults.completed') || [] }; return msg;",
    outputs: 1,
    x: 0,
    y: 0,
    wires: [["faults-observed-out"]],
  });
  nodes.push({ id: "faults-observed-out", type: "http response", z, statusCode: "", headers: {}, x: 0, y: 0, wires: [] });
  nodes.push({ id: "faults-forget-in", type: "http in", z, url: "/faults/observed", method: "delete", x: 0, y: 0, wires: [["faults-forget"]] });
  nodes.push({
    id: "faults-forget",
    type: "function",
    z,
    func: "const which = msg.req.query.completed; if (which) global.set('faults.completed', (global.get('faults.completed') || []).filter((c) => c.node !== which)); else { global.set('faults.errors', []); global.set('faults.completed', []); } msg.payload = ''; msg.statusCode = 204; return msg;",
    outputs: 1,
    x: 0,
    y: 0,
    wires: [["faults-observed-out"]],
  });
  return nodes;
}

/** What an outcome lacks and holds twice, comparing the keys expected with those found (as multisets). */
export function compareCounts(expected: string[], found: string[]): { missing: number; duplicated: number; rows: number } {
  const counts = new Map<string, number>();
  for (const key of expected) counts.set(key, (counts.get(key) ?? 0) + 1);
  let missing = 0;
  let duplicated = 0;
  const seen = new Map<string, number>();
  for (const key of found) seen.set(key, (seen.get(key) ?? 0) + 1);
  for (const [key, n] of counts) missing += Math.max(0, n - (seen.get(key) ?? 0));
  for (const [key, n] of seen) duplicated += Math.max(0, n - (counts.get(key) ?? 0));
  return { missing, duplicated, rows: found.length };
}

/** Every fault a proxy makes, as the tests name them. */
export const PROXY_FAULTS: FaultMode[] = ["reset", "stall", "black-hole", "slow"];

/** How long a fault lasts in the tests: long enough to land mid-run, short enough for the suite. */
export const FAULT_MS = 3_000;

/** Waits `ms` of the fault's duration (the only fixed wait: how long the neighbour stays broken). */
export function hold(ms = FAULT_MS): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A fault as a test's name says it. */
export function describeFault(mode: FaultMode): string {
  return { pass: "works", reset: "resets every connection", stall: "stalls", "black-hole": "swallows every byte", slow: "slows to 4 KiB/s", refuse: "refuses connections" }[mode];
}

/** The call-log file of `date` in Azurite against the sandbox's calls that day: missing, duplicated (by start and end time), rows. */
export async function callsInDayFile(rig: FaultRig, date: string): Promise<{ missing: number; duplicated: number; rows: number }> {
  const [y, m] = date.split("-");
  const csv = await rig.blob("call-logs", `${y}/${m}/${date}_call_logs.csv`);
  if (csv === undefined) throw new Error(`no file for ${date}`);
  const lines = csv.split(/\r?\n/).slice(1).filter((l) => l.length > 0);
  const start = Date.parse(`${date}T00:00:00Z`);
  const expected = rig.sandbox.goto.calls.callsBetween(new Date(start), new Date(start + 86_400_000));
  return compareCounts(
    expected.map((c) => `${c.startTime}|${c.endTime}`),
    lines.map((l) => l.split(",").filter((f) => /^"?\d{4}-\d\d-\d\dT/.test(f)).slice(0, 2).join("|").replace(/"/g, "")),
  );
}
