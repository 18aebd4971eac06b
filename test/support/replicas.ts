import http from "node:http";
import type { AddressInfo } from "node:net";
import { request } from "undici";
import { eventually } from "./node-red";
import { NodeRedProcess, startNodeRed } from "./node-red-process";

/** What a flow posted to the collector: the path, the replica that sent it, its body, when it came. */
export interface Posted {
  path: string;
  replica: number;
  body: any;
  at: number;
}

/**
 * An HTTP server the replicas' flows post to (a stand-in for the mediator and for a status
 * dashboard): each post is `{ replica, payload }`, kept in order of arrival.
 */
export class Collector {
  readonly posts: Posted[] = [];
  private server?: http.Server;
  url = "";

  async listen(): Promise<void> {
    this.server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("error", () => undefined);
      req.on("end", () => {
        try {
          const parsed = JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}");
          this.posts.push({ path: (req.url ?? "").split("?")[0]!, replica: Number(parsed.replica), body: parsed.payload, at: Date.now() });
        } catch {
          // a body that is not JSON is not one of ours
        }
        res.writeHead(200, { "content-type": "application/json" }).end('{"result":"True"}');
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  of(path: string, since = 0): Posted[] {
    return this.posts.filter((p) => p.path === path && p.at >= since);
  }

  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}

/** Nodes that post `{ replica: $REPLICA, payload }` of each message they get to `<collector>/<path>`. */
export function postTo(collector: Collector, id: string, path: string, z: string): object[] {
  return [
    {
      id,
      type: "change",
      z,
      rules: [
        { t: "set", p: "payload", pt: "msg", to: '{ "replica": $number($env("REPLICA")), "payload": payload }', tot: "jsonata" },
        { t: "delete", p: "headers", pt: "msg" },
        { t: "delete", p: "url", pt: "msg" },
      ],
      wires: [[`${id}-post`]],
    },
    { id: `${id}-post`, type: "http request", z, method: "POST", ret: "txt", paytoqs: "ignore", url: `${collector.url}${path}`, persist: false, senderr: false, headers: [], wires: [[]] },
  ];
}

/** An http in route `GET <path>` that answers 200: the flow is deployed and serving. */
export function readyRoute(path: string, z: string): object[] {
  return [
    { id: "ready-in", type: "http in", z, url: path, method: "get", wires: [["ready-res"]] },
    { id: "ready-res", type: "http response", z, statusCode: "200", wires: [] },
  ];
}

/** A status node of `scope` whose statuses go to `<collector>/status`, as `{ text }`. */
export function statusesTo(collector: Collector, id: string, scope: string[], z: string): object[] {
  return [
    { id, type: "status", z, scope, wires: [[`${id}-text`]] },
    { id: `${id}-text`, type: "change", z, rules: [{ t: "set", p: "payload", pt: "msg", to: "{ \"text\": status.text, \"source\": status.source.id }", tot: "jsonata" }], wires: [[`${id}-send`]] },
    ...postTo(collector, `${id}-send`, "/status", z),
  ];
}

/** `count` Node-RED processes on this machine, each told its number in the environment (REPLICA). */
export async function startReplicas(count: number): Promise<NodeRedProcess[]> {
  // One after another: two starting at once could be handed the same free port.
  const started: Array<PromiseSettledResult<NodeRedProcess>> = [];
  for (let i = 0; i < count && !started.some((s) => s.status === "rejected"); i++) {
    started.push(await startNodeRed({ env: { REPLICA: String(i) } }).then((value) => ({ status: "fulfilled" as const, value }), (reason: unknown) => ({ status: "rejected" as const, reason })));
  }
  const running = started.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) {
    await Promise.all(running.map((r) => r.stop()));
    throw failed.reason;
  }
  return running;
}

/** Deploys `flows` to every replica and waits until each serves `GET <readyPath>` (an http in route of the flow). */
export async function deployEverywhere(replicas: NodeRedProcess[], flows: unknown[], readyPath: string): Promise<void> {
  await Promise.all(replicas.map((r) => r.deploy(flows)));
  for (const r of replicas) {
    await eventually(async () => {
      const res = await request(`${r.url}${readyPath}`).catch(() => undefined);
      await res?.body.dump();
      return res?.statusCode === 200;
    }, 30_000, `${r.url}${readyPath} to answer`);
  }
}

/** Posts JSON to a replica's `http in` route and returns the status code and answer. */
export async function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; body: any }> {
  const res = await request(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body), headersTimeout: 60_000, bodyTimeout: 60_000 });
  const text = await res.body.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // kept as text
  }
  return { status: res.statusCode, body: parsed };
}
