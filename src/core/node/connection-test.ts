import { CHECK_RESPONSE_MAX_BYTES, CheckLine, ConnectionChecks, ConnectionReport, hostOf } from "../check-report";
import { errorMessage } from "../errors";
import { HttpClient } from "../http/client";
import { OAuthGrant } from "../tokens/oauth-grant";
import { StoredTokenView } from "../tokens/token-view";
import { OAuthConnectionSettings, openTokenStore } from "./oauth-connection";
import type { StatusReporter } from "./status";
import type { DoneFunction, Node, NodeAPI, NodeDef, NodeMessage, SendFunction } from "./types";

/**
 * The Test connection button of every config node, and the same test run from a flow.
 *
 * One admin route, `POST /gluework/connection-test/:type`, guarded by the type's write permission
 * (as the dialogs' other routes are). Its body is nothing but the node's own fields: `{ id, config,
 * credentials, options }`, the values in the dialog, deployed or not. A password credential the
 * editor does not send back (`__PWRD__`, or left empty) is taken from the deployed node with that
 * id, and only while every destination field (hosts, endpoints) equals the deployed node's: a
 * stored secret is never sent to a host the deployed node does not name. Answers within 15 s.
 */

const PLACEHOLDER = "__PWRD__";
const ROUTE = "/gluework/connection-test/:type";

export interface ConnectionTestInput {
  /** The config node's id (deployed or not). */
  id: string;
  config: Record<string, unknown>;
  credentials: Record<string, string | undefined>;
  /** Settings of the test itself (a mailbox to read), never stored. */
  options: Record<string, string | undefined>;
  /** The runtime, for what a check needs of it (the token store, a database node). */
  RED: NodeAPI;
  /** The node is deployed and the dialog points where it does: its stored secrets may be used. */
  trusted: boolean;
}

export interface ConnectionTester {
  /** The config node type. */
  type: string;
  /**
   * The fields that say where secrets go (hosts, endpoints, tenant): stored secrets fill in the
   * blanks only while these equal the deployed node's.
   */
  destination: readonly string[];
  /** The credentials of type password (the ones the editor never sends back). */
  secrets: readonly string[];
  run(input: ConnectionTestInput, checks: ConnectionChecks): Promise<void>;
}

const testers = new Map<string, ConnectionTester>();
const routed = new WeakSet<object>();
let runtime: NodeAPI | undefined;

/** Makes a config node type testable: from its dialog and from a `test` message. */
export function registerConnectionTest(RED: NodeAPI, tester: ConnectionTester): void {
  testers.set(tester.type, tester);
  runtime = RED;
  if (routed.has(RED.httpAdmin)) return;
  routed.add(RED.httpAdmin);
  RED.httpAdmin.post(
    ROUTE,
    // The permission first, so that nobody without it learns which types can be tested.
    (req: any, res: any, next?: (err?: unknown) => void) => {
      const type = String(req.params?.type ?? "").replace(/[^a-z0-9-]/gi, "");
      RED.auth.needsPermission(`${type}.write`)(req, res, next);
    },
    (req: any, res: any) => {
      const tester = testers.get(String(req.params.type));
      if (!tester) {
        res.status(404).json({ error: "this node type has no connection test" });
        return;
      }
      const body = (req.body ?? {}) as { id?: unknown; config?: unknown; credentials?: unknown; options?: unknown };
      const { input, notes } = fromDialog(RED, tester, body);
      void runTest(tester, input, notes).then(
        (report) => res.json(report),
        () => {
          if (!res.headersSent) res.status(500).json({ error: "the test could not run; see the Node-RED log" });
        },
      );
    },
  );
}

/** The test of a deployed config node, as a flow node runs it on a `test` message. */
export async function testDeployed(id: string): Promise<ConnectionReport | undefined> {
  const RED = runtime;
  if (!RED) return undefined;
  const def = deployedDef(RED, id);
  const tester = def ? testers.get(def.type) : undefined;
  if (!def || !tester) return undefined;
  const credentials = ((RED.nodes as any).getCredentials?.(id) ?? {}) as Record<string, string | undefined>;
  return runTest(tester, { id, config: def, credentials: { ...credentials }, options: {}, RED, trusted: true });
}

/**
 * A `test` message on a flow node: runs the tests of the config nodes it uses and sends
 * `msg.payload = { ok, reports }`. False when the node uses no testable config node.
 */
export function testFromFlow(node: Node, status: StatusReporter, msg: NodeMessage, send: SendFunction, done: DoneFunction): boolean {
  const ids = testableConfigNodes(node.id);
  if (!ids.length) return false;
  status.busy("testing connection");
  Promise.all(ids.map((id) => testDeployed(id)))
    .then((found) => {
      const reports = found.filter((r): r is ConnectionReport => !!r);
      const ok = reports.every((r) => r.ok);
      if (ok) status.ok("connection test passed");
      else status.warn("connection test failed");
      msg.payload = { ok, reports };
      send(msg);
      done();
    })
    .catch((err: unknown) => {
      status.error("connection test failed");
      done(err instanceof Error ? err : new Error(String(err)));
    });
  return true;
}

/** The testable config nodes a flow node's settings point at (its deployed definition). */
export function testableConfigNodes(nodeId: string): string[] {
  const RED = runtime;
  if (!RED) return [];
  const def = deployedDef(RED, nodeId);
  if (!def) return [];
  const ids = new Set(Object.values(def).filter((v): v is string => typeof v === "string" && v.length > 0));
  const found: string[] = [];
  RED.nodes.eachNode((n) => {
    if (ids.has(n.id) && testers.has(n.type) && n.id !== nodeId) found.push(n.id);
  });
  return found;
}

async function runTest(tester: ConnectionTester, input: ConnectionTestInput, notes: CheckLine[] = []): Promise<ConnectionReport> {
  const checks = new ConnectionChecks();
  checks.lines.push(...notes);
  try {
    await Promise.race([
      tester.run(input, checks),
      new Promise<void>((resolve) => {
        if (checks.signal.aborted) resolve();
        checks.signal.addEventListener("abort", () => resolve(), { once: true });
      }),
    ]);
  } catch (err) {
    checks.fail("settings", errorMessage(err), "correct the setting named here, then test again");
  }
  // At the deadline, the check under way records itself as failed in the same turn: let it.
  await new Promise((resolve) => setImmediate(resolve));
  const report = checks.report(tester.type);
  // The lines as they stand at the answer (a check still under way cannot add to it afterwards),
  // with this test's own secrets masked: a server may echo what it was sent.
  const secrets = tester.secrets.map((name) => input.credentials[name]).filter((v): v is string => typeof v === "string" && v.length >= 4);
  const mask = (text: string | undefined) => (text === undefined ? text : secrets.reduce((out, secret) => out.split(secret).join("[redacted]"), text));
  return { ...report, checks: report.checks.map((line) => ({ ...line, detail: mask(line.detail), fix: mask(line.fix) })) };
}

function fromDialog(RED: NodeAPI, tester: ConnectionTester, body: { id?: unknown; config?: unknown; credentials?: unknown; options?: unknown }): { input: ConnectionTestInput; notes: CheckLine[] } {
  const id = typeof body.id === "string" ? body.id : "";
  const config = plainStrings(body.config);
  const credentials = plainStrings(body.credentials) as Record<string, string | undefined>;
  const options = plainStrings(body.options) as Record<string, string | undefined>;
  const deployed = id ? deployedDef(RED, id) : undefined;
  const notes: CheckLine[] = [];
  const trusted = !!deployed && deployed.type === tester.type && tester.destination.every((f) => norm(config[f]) === norm(deployed[f]));
  const missing = tester.secrets.filter((name) => !credentials[name] || credentials[name] === PLACEHOLDER);
  for (const name of missing) delete credentials[name];
  if (missing.length && deployed && deployed.type === tester.type) {
    const stored = ((RED.nodes as any).getCredentials?.(id) ?? {}) as Record<string, string | undefined>;
    const moved = tester.destination.filter((f) => norm(config[f]) !== norm(deployed[f]));
    if (moved.length === 0) {
      for (const name of missing) if (stored[name]) credentials[name] = stored[name];
    } else if (missing.some((name) => stored[name])) {
      notes.push({
        check: "stored secrets",
        outcome: "skipped",
        detail: `not used: ${fieldNames(moved)} ${moved.length === 1 ? "differs" : "differ"} from the deployed node's, and a stored secret goes only where the deployed node points`,
      });
    }
  }
  return { input: { id, config: { ...config, id, type: tester.type }, credentials, options, RED, trusted }, notes };
}

/** Field names as a person reads them: `authHost`, `apiHost` → "the auth host and the API host". */
function fieldNames(fields: string[]): string {
  const words = fields.map((f) => `the ${f.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase().replace(/\b(api|url|uri|id|smtp)\b/g, (w) => w.toUpperCase())}`);
  return words.length > 1 ? `${words.slice(0, -1).join(", ")} and ${words[words.length - 1]}` : words[0] ?? "";
}

function deployedDef(RED: NodeAPI, id: string): NodeDef | undefined {
  let found: NodeDef | undefined;
  RED.nodes.eachNode((n) => {
    if (n.id === id) found = n;
  });
  return found;
}

/** Only the plain values of an object (strings, numbers, booleans), as strings or booleans. */
function plainStrings(value: unknown): Record<string, any> {
  const out: Record<string, any> = {};
  if (!value || typeof value !== "object" || Array.isArray(value)) return out;
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    if (k === "__proto__" || k === "constructor" || k === "prototype") continue;
    if (typeof v === "string" || typeof v === "boolean") out[k] = v;
    else if (typeof v === "number" && Number.isFinite(v)) out[k] = String(v);
  }
  return out;
}

function norm(value: unknown): string {
  // "_ADD_" is the editor's "Add new config node…" entry: no config node chosen.
  return value === undefined || value === null || value === "_ADD_" ? "" : String(value).trim();
}

/**
 * Runs `use` with a read-only view of the tokens the deployed node keeps for this client. A test
 * writes nothing and refreshes nothing: it never seeds the store with a token typed in the dialog
 * and never spends a refresh token, since it could not keep the one that replaces it. The client
 * id and secret are checked with a made-up authorization code (refused for the code when the
 * client is right); a refresh token typed in the dialog is not tried, and the report points to
 * Authorize. The stored chain of a client is used only when no deployed node of it points elsewhere.
 */
export async function withTokenStore(
  input: ConnectionTestInput,
  settings: OAuthConnectionSettings,
  checks: ConnectionChecks,
  names: string[],
  use: (tokens: StoredTokenView) => Promise<void>,
): Promise<void> {
  if (!settings.clientId || !settings.clientSecret) {
    checks.fail("client id and secret", "the client id or the client secret is empty", "fill in both from the OAuth client (integration) of the provider");
    return checks.skipAll(names, "no client");
  }
  const { profile } = settings;
  // The test's own deadline answers first, and aborts the request with it; the answer is capped.
  const http = new HttpClient({ name: profile.name, baseUrl: profile.tokenUrl, timeoutMs: 20_000, signal: checks.signal, maxResponseBytes: CHECK_RESPONSE_MAX_BYTES });
  checks.service(hostOf(profile.tokenUrl));
  try {
    const grant = new OAuthGrant(profile, { clientId: settings.clientId, clientSecret: settings.clientSecret }, http);
    const known = await checks.run("client id and secret", `check both against the OAuth client in ${profile.name}`, () => grant.checkClient(String(input.config.redirectUri ?? "") || "http://127.0.0.1/"), () => `${profile.name} knows this client and its secret`);
    if (known === undefined) return checks.skipAll(names, "the client was not accepted");
  } finally {
    await http.close();
  }
  const deployedToken = input.trusted ? stringOf(((input.RED.nodes as any).getCredentials?.(input.id) ?? {}).refreshToken) : undefined;
  const typed = settings.refreshToken && settings.refreshToken.trim() !== (deployedToken ?? "").trim();
  if (typed) {
    checks.skip(
      names[0]!,
      `not tried: ${profile.name} replaces a refresh token when it is used, and a test keeps nothing, so checking the one typed here would spend it. Use Authorize in this dialog instead, then deploy`,
    );
    return checks.skipAll(names.slice(1), "the refresh token typed here is not tried");
  }
  if (!input.trusted) {
    return checks.skipAll(names, "no token to test with: use Authorize in this dialog, then deploy and test the deployed node");
  }
  const destination = testers.get(String(input.config.type))?.destination ?? [];
  if (sharesChainElsewhere(input, settings.clientId, destination)) {
    return checks.skipAll(names, `a deployed ${input.config.type} node of this client points at another host; its stored tokens are not sent elsewhere: deploy, then test`);
  }
  const read = await checks.run(
    "token store",
    "check the token store's settings (the postgres-database node, when tokens are kept in PostgreSQL)",
    async () => {
      const store = await openTokenStore(input.RED, settings);
      try {
        return { stored: await store.peek(settings.key) };
      } finally {
        await store.close();
      }
    },
    () => (settings.store === "postgres" ? "PostgreSQL" : "encrypted file"),
  );
  if (!read) return checks.skipAll(names, "no token store");
  await use(new StoredTokenView(read.stored, settings.label));
}

function stringOf(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function sharesChainElsewhere(input: ConnectionTestInput, clientId: string, destination: readonly string[]): boolean {
  let found = false;
  input.RED.nodes.eachNode((n) => {
    if (n.type !== input.config.type) return;
    const creds = ((input.RED.nodes as any).getCredentials?.(n.id) ?? {}) as Record<string, string | undefined>;
    if ((creds.clientId ?? "").trim() !== clientId) return;
    if (destination.some((f) => norm(input.config[f]) !== norm(n[f]))) found = true;
  });
  return found;
}
