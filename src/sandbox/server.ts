import { promises as fs, readFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";

export interface SandboxRequest {
  method: string;
  /** The path without the query string. */
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  headers: http.IncomingHttpHeaders;
  /** JSON or form bodies parsed; anything else as text. */
  body: any;
  rawBody: string;
}

export interface SandboxReply {
  status?: number;
  headers?: Record<string, string>;
  json?: unknown;
  text?: string;
  /** 302 to this location. */
  redirect?: string;
}

export type SandboxHandler = (req: SandboxRequest) => SandboxReply | Promise<SandboxReply>;

/** An answer the sandbox gives instead of the real one, for tests of failure paths. */
export interface Fault {
  method?: string;
  /** A path prefix, or a pattern the path must match. */
  path: string | RegExp;
  status?: number;
  headers?: Record<string, string>;
  json?: unknown;
  /** Close the connection without answering. */
  drop?: boolean;
  /** How many matching requests get this answer (1 by default). */
  times?: number;
}

/** A part of the sandbox whose state survives a restart of the demo. */
export interface PersistentPart {
  snapshot(): unknown;
  restore(data: any): void;
}

interface Route {
  method: string;
  pattern: RegExp;
  keys: string[];
  handler: SandboxHandler;
}

/**
 * The local stand-in for the cloud APIs we cannot reach: one HTTP server on loopback that the
 * provider modules (GoTo, Teamleader, Microsoft) mount their routes on. It counts what it serves,
 * can answer with injected faults, and has a small control API under /_sandbox for other processes.
 */
export class SandboxServer {
  private readonly routes: Route[] = [];
  private readonly faults: Array<Fault & { left: number }> = [];
  private readonly counters = new Map<string, number>();
  private server?: http.Server;
  private baseUrl = "";
  private readonly parts = new Map<string, PersistentPart>();
  private stateFile?: string;
  private saveTimer?: NodeJS.Timeout;

  constructor() {
    this.route("GET", "/_sandbox/stats", () => ({ json: this.stats() }));
    this.route("POST", "/_sandbox/stats/reset", () => {
      this.counters.clear();
      return { status: 204 };
    });
    this.route("POST", "/_sandbox/faults", (req) => {
      const fault = req.body as Fault & { pathPattern?: string };
      this.inject({ ...fault, path: fault.pathPattern ? new RegExp(fault.pathPattern) : fault.path });
      return { status: 204 };
    });
  }

  get url(): string {
    if (!this.baseUrl) throw new Error("the sandbox is not listening yet");
    return this.baseUrl;
  }

  /** Adds a route; `:name` segments become `req.params.name`. */
  route(method: string, path: string, handler: SandboxHandler): void {
    const keys: string[] = [];
    const pattern = new RegExp(
      `^${path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&").replace(/\/:([A-Za-z_]+)/g, (_m, key: string) => {
        keys.push(key);
        return "/([^/]+)";
      })}$`,
    );
    this.routes.push({ method: method.toUpperCase(), pattern, keys, handler });
  }

  /** Registers state to keep across restarts when persistence is on. */
  persistent(name: string, part: PersistentPart): void {
    this.parts.set(name, part);
  }

  /** Keeps the state of every persistent part in `file`: restored now, saved after each change. */
  persistTo(file: string): void {
    this.stateFile = file;
    let saved: Record<string, unknown> = {};
    try {
      saved = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
    } catch {
      // first start: nothing saved yet
    }
    for (const [name, part] of this.parts) if (saved[name] !== undefined) part.restore(saved[name]);
  }

  /** Saves the state soon (persistence on), coalescing bursts of changes. */
  changed(): void {
    if (!this.stateFile || this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.save();
    }, 200);
  }

  async save(): Promise<void> {
    if (!this.stateFile) return;
    const data = Object.fromEntries([...this.parts].map(([name, part]) => [name, part.snapshot()]));
    const tmp = `${this.stateFile}.tmp`;
    await fs.writeFile(tmp, JSON.stringify(data));
    await fs.rename(tmp, this.stateFile);
  }

  inject(fault: Fault): void {
    this.faults.push({ ...fault, left: fault.times ?? 1 });
  }

  clearFaults(): void {
    this.faults.length = 0;
  }

  count(name: string, by = 1): void {
    this.counters.set(name, (this.counters.get(name) ?? 0) + by);
  }

  resetStats(): void {
    this.counters.clear();
  }

  counter(name: string): number {
    return this.counters.get(name) ?? 0;
  }

  stats(): Record<string, number> {
    return Object.fromEntries([...this.counters.entries()].sort(([a], [b]) => a.localeCompare(b)));
  }

  async listen(port = 0, host = "127.0.0.1"): Promise<string> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      this.server!.once("error", reject);
      this.server!.listen(port, host, () => resolve());
    });
    const address = this.server.address() as AddressInfo;
    this.baseUrl = `http://${host}:${address.port}`;
    return this.baseUrl;
  }

  async close(): Promise<void> {
    if (this.saveTimer) {
      clearTimeout(this.saveTimer);
      this.saveTimer = undefined;
      await this.save().catch(() => undefined);
    }
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const url = new URL(req.url ?? "/", "http://sandbox");
      const method = (req.method ?? "GET").toUpperCase();
      const rawBody = await readBody(req);
      const fault = this.takeFault(method, url.pathname);
      if (fault) {
        this.count(`fault ${fault.status ?? "drop"}`);
        if (fault.drop) {
          req.socket.destroy();
          return;
        }
        return send(res, { status: fault.status ?? 500, headers: fault.headers, json: fault.json ?? { message: "injected fault" } });
      }
      for (const route of this.routes) {
        if (route.method !== method) continue;
        const match = route.pattern.exec(url.pathname);
        if (!match) continue;
        const params = Object.fromEntries(route.keys.map((k, i) => [k, decodeURIComponent(match[i + 1]!)]));
        const request: SandboxRequest = {
          method,
          path: url.pathname,
          params,
          query: url.searchParams,
          headers: req.headers,
          body: parseBody(rawBody, req.headers["content-type"]),
          rawBody,
        };
        const reply = await route.handler(request);
        if (method !== "GET") this.changed();
        return send(res, reply);
      }
      send(res, { status: 404, json: { message: `the sandbox has no ${method} ${url.pathname}` } });
    } catch (err) {
      send(res, { status: 500, json: { message: `sandbox error: ${(err as Error).message}` } });
    }
  }

  private takeFault(method: string, path: string): Fault | undefined {
    const index = this.faults.findIndex(
      (f) => (!f.method || f.method.toUpperCase() === method) && (typeof f.path === "string" ? path.startsWith(f.path) : f.path.test(path)),
    );
    if (index < 0) return undefined;
    const fault = this.faults[index]!;
    if (--fault.left <= 0) this.faults.splice(index, 1);
    return fault;
  }
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function parseBody(raw: string, contentType: string | undefined): unknown {
  if (!raw) return {};
  if (contentType?.includes("application/json")) {
    try {
      return JSON.parse(raw);
    } catch {
      return raw;
    }
  }
  if (contentType?.includes("application/x-www-form-urlencoded")) return Object.fromEntries(new URLSearchParams(raw));
  return raw;
}

function send(res: http.ServerResponse, reply: SandboxReply): void {
  if (res.headersSent) return;
  if (reply.redirect) {
    res.writeHead(302, { location: reply.redirect, ...reply.headers });
    res.end();
    return;
  }
  const headers: Record<string, string> = { ...reply.headers };
  let body = "";
  if (reply.json !== undefined) {
    body = JSON.stringify(reply.json);
    headers["content-type"] ??= "application/json";
  } else if (reply.text !== undefined) {
    body = reply.text;
    headers["content-type"] ??= "text/plain; charset=utf-8";
  }
  res.writeHead(reply.status ?? 200, headers);
  res.end(body);
}
