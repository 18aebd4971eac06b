import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { request } from "undici";
import type { ConnectionReport } from "../../src/core/check-report";
import { eventually } from "../support/node-red";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";

const GB = 1024 * 1024 * 1024;
const MB = 1024 * 1024;
/** The route answers within 15 s; a loaded machine gets a little more. */
const ANSWER_WITHIN_MS = 17_000;
/** Once the answer is out, the request behind it is closed within this (a loaded machine takes seconds). */
const CLOSED_WITHIN_MS = 5_000;

/** A peer that counts the connections it holds, so a test sees when the client let go. */
interface Peer {
  url: string;
  host: string;
  port: number;
  open(): number;
  close(): Promise<void>;
}

function track(server: net.Server): { sockets: Set<net.Socket> } {
  const sockets = new Set<net.Socket>();
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
  });
  return { sockets };
}

async function listen(server: net.Server, sockets: Set<net.Socket>, scheme: string): Promise<Peer> {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `${scheme}://127.0.0.1:${port}`,
    host: "127.0.0.1",
    port,
    open: () => sockets.size,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Writes `total` bytes of `chunk` to `out` as fast as it takes them, never holding more than one chunk. */
function pour(out: NodeJS.WritableStream & { destroyed?: boolean }, chunk: Buffer, total: number): void {
  let sent = 0;
  const more = () => {
    while (sent < total && !out.destroyed) {
      sent += chunk.length;
      if (!out.write(chunk)) return void out.once("drain", more);
    }
    if (sent >= total && !out.destroyed) out.end();
  };
  more();
}

/** An HTTP server answering every request 200 with a JSON-looking body of 1 GB, made as it goes. */
async function endlessHttp(): Promise<Peer> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.on("error", () => undefined);
    res.writeHead(200, { "content-type": "application/json" });
    res.write('{"access_token":"');
    pour(res, Buffer.alloc(64 * 1024, "a"), GB);
  });
  const { sockets } = track(server);
  return listen(server, sockets, "http");
}

/** An HTTP server that sends its headers and the start of a body, then nothing more. */
async function stallingHttp(): Promise<Peer> {
  const server = http.createServer((req, res) => {
    req.resume();
    res.on("error", () => undefined);
    res.writeHead(200, { "content-type": "application/json" });
    res.write('{"access_token":"');
  });
  const { sockets } = track(server);
  return listen(server, sockets, "http");
}

/** A TCP server that greets every connection with 1 GB on one line (for SMTP and PostgreSQL). */
async function endlessRaw(): Promise<Peer> {
  const server = net.createServer((socket) => {
    socket.resume();
    socket.write("220-");
    pour(socket, Buffer.alloc(64 * 1024, "x"), GB);
  });
  const { sockets } = track(server);
  return listen(server, sockets, "tcp");
}

/** A TCP server that accepts and never says a word. */
async function silentRaw(): Promise<Peer> {
  // Reading (and dropping) what comes is how a server sees the client close.
  const server = net.createServer((socket) => socket.resume());
  const { sockets } = track(server);
  return listen(server, sockets, "tcp");
}

/** The resident memory of a process, from /proc. */
function rss(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n").find((l) => l.startsWith("VmRSS:"));
  return Number(/(\d+)/.exec(line ?? "")?.[1] ?? 0) * 1024;
}

/** Samples a process's memory until stopped; the peak. */
function watchMemory(pid: number): { stop(): number } {
  let peak = rss(pid);
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rss(pid));
    } catch {
      // the process is gone: the test's own assertions say so
    }
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return peak;
    },
  };
}

describe("huge, endless and stalled answers", function () {
  this.timeout(180_000);
  let red: NodeRedProcess;
  let db: TestDatabase;
  let endless: Peer;
  let stalling: Peer;
  let endlessTcp: Peer;
  let silentTcp: Peer;
  let baseline = 0;

  before(async () => {
    [endless, stalling, endlessTcp, silentTcp] = await Promise.all([endlessHttp(), stallingHttp(), endlessRaw(), silentRaw()]);
    db = await createTestDatabase("gw_huge");
    red = await startNodeRed();
    await red.deploy(flows());
    baseline = rss(red.child.pid!);
  });
  after(async () => {
    await red?.stop();
    await db?.drop();
    await Promise.all([endless, stalling, endlessTcp, silentTcp].map((p) => p?.close()));
  });

  /** The deployed flow: the database the Teamleader chain needs, and two pipelines pointed at the endless server. */
  function flows(): unknown[] {
    const answer = (id: string, y: number) => [
      { id: `${id}-catch`, type: "catch", z: "tab", x: 300, y: y + 40, scope: [id], uncaught: false, wires: [[`${id}-error`]] },
      { id: `${id}-error`, type: "change", z: "tab", x: 500, y: y + 40, rules: [{ t: "set", p: "payload", pt: "msg", to: "error.message", tot: "msg" }], wires: [[`${id}-out`]] },
      { id: `${id}-out`, type: "http response", z: "tab", x: 700, y, statusCode: "", headers: {} },
    ];
    return [
      { id: "tab", type: "tab", label: "huge answers" },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: db.name, ssl: "disable", poolSize: "2", credentials: { url: db.url } },
      { id: "goto", type: "goto-credentials", authHost: endless.url, apiHost: endless.url, store: "file", credentials: { clientId: "huge-client", clientSecret: "huge-secret", refreshToken: "huge-refresh" } },
      { id: "storage", type: "azure-storage-account", auth: "key", accountName: "devstoreaccount1", endpoint: `${endless.url}/devstoreaccount1`, credentials: { accountKey: Buffer.from("key").toString("base64") } },
      { id: "calls-in", type: "http in", z: "tab", x: 100, y: 100, url: "/huge/calls", method: "post", wires: [["calls"]] },
      { id: "calls", type: "goto-call-logs", z: "tab", x: 300, y: 100, goto: "goto", timeZone: "Europe/Brussels", wires: [["calls-out"]] },
      ...answer("calls", 100),
      { id: "blobs-in", type: "http in", z: "tab", x: 100, y: 200, url: "/huge/blobs", method: "post", wires: [["blobs"]] },
      { id: "blobs", type: "blob-csv-reader", z: "tab", x: 300, y: 200, target: "azure", storage: "storage", container: "audit", prefix: "audit/", action: "list", wires: [["blobs-out"], ["blobs-out"]] },
      ...answer("blobs", 200),
    ];
  }

  /** Presses Test connection as the editor does, and times the answer. */
  async function testConnection(type: string, body: Record<string, unknown>): Promise<ConnectionReport> {
    const res = await request(`${red.url}/gluework/connection-test/${type}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ id: `test-${type}`, ...body }), headersTimeout: 60_000, bodyTimeout: 60_000 });
    const text = await res.body.text();
    assert.equal(res.statusCode, 200, text);
    return JSON.parse(text) as ConnectionReport;
  }

  /** Runs `press` against `peer`, then asserts what must hold after any huge or stalled answer. */
  async function survives<T>(peer: Peer, press: () => Promise<T>, answerWithinMs = ANSWER_WITHIN_MS): Promise<T> {
    const memory = watchMemory(red.child.pid!);
    const started = Date.now();
    let result: T;
    try {
      result = await press();
    } finally {
      memory.stop();
    }
    const took = Date.now() - started;
    assert.ok(took < answerWithinMs, `the answer took ${took} ms`);
    await eventually(() => peer.open() === 0, CLOSED_WITHIN_MS, `the connections to ${peer.url} to close within ${CLOSED_WITHIN_MS} ms of the answer (the request behind it was not aborted)`);
    const peak = memory.stop();
    assert.ok(peak - baseline < 100 * MB, `Node-RED's memory grew by ${Math.round((peak - baseline) / MB)} MB`);
    assert.equal(red.child.exitCode, null, "Node-RED exited");
    const settings = await request(`${red.url}/settings`, { headersTimeout: 5000 });
    await settings.body.dump();
    assert.equal(settings.statusCode, 200);
    return result!;
  }

  const failedLine = (report: ConnectionReport) => {
    assert.equal(report.ok, false, JSON.stringify(report));
    const failed = report.checks.find((l) => l.outcome === "failed");
    assert.ok(failed, JSON.stringify(report));
    return failed;
  };

  const gotoBody = (peer: Peer) => ({ config: { authHost: peer.url, apiHost: peer.url, store: "file" }, credentials: { clientId: `goto-${peer.port}`, clientSecret: "s3cr3t-for-tests", refreshToken: "r3fr3sh-for-tests" } });
  const teamleaderBody = (peer: Peer) => ({ config: { authHost: peer.url, apiHost: peer.url, redirectUri: "http://127.0.0.1:1880/tl/callback", database: "db" }, credentials: { clientId: `tl-${peer.port}`, clientSecret: "s3cr3t-for-tests", refreshToken: "r3fr3sh-for-tests" } });
  const graphBody = (peer: Peer) => ({ config: { tenantId: "contoso.test", clientId: "3f0c6a51-6d8e-4b55-9a7e-0d5f6c2d1a11", authType: "secret", authorityHost: peer.url, graphUrl: peer.url }, credentials: { clientSecret: "s3cr3t-for-tests" } });
  const storageBody = (peer: Peer) => ({ config: { auth: "key", accountName: "devstoreaccount1", endpoint: `${peer.url}/devstoreaccount1` }, credentials: { accountKey: Buffer.from("key").toString("base64") }, options: { container: "audit" } });
  const smtpBody = (peer: Peer) => ({ config: { host: peer.host, port: String(peer.port), security: "none", auth: "none", sender: "desk@example.com" }, credentials: {} });
  const postgresBody = (peer: Peer) => ({ config: { mode: "server", host: peer.host, port: String(peer.port), database: "test", ssl: "disable" }, credentials: { user: "postgres" } });

  describe("a connection test against an endless answer", () => {
    it("goto-credentials stops reading at the cap and says the host may be wrong", async () => {
      const report = await survives(endless, () => testConnection("goto-credentials", gotoBody(endless)));
      assert.match(failedLine(report).detail ?? "", /answered with more than 1 MB to POST \/oauth\/token; is the host right\?/);
    });

    it("teamleader-connection stops reading at the cap", async () => {
      const report = await survives(endless, () => testConnection("teamleader-connection", teamleaderBody(endless)));
      assert.match(failedLine(report).detail ?? "", /answered with more than 1 MB/);
    });

    it("graph-app stops reading Microsoft identity's answer at the cap", async () => {
      const report = await survives(endless, () => testConnection("graph-app", graphBody(endless)));
      assert.match(failedLine(report).detail ?? "", /answered with more than 1 MB/);
    });

    it("azure-storage-account stops reading at the cap instead of building a 1 GB string", async () => {
      const report = await survives(endless, () => testConnection("azure-storage-account", storageBody(endless)));
      assert.match(failedLine(report).detail ?? "", /answered with more than 1 MB/);
    });

    it("smtp-connection stops reading an endless greeting and fails at once, not at the deadline", async () => {
      // The reply limit ends the connection; the check must hear of it rather than wait 13 s.
      const report = await survives(endlessTcp, () => testConnection("smtp-connection", smtpBody(endlessTcp)), 5000);
      failedLine(report);
    });

    it("postgres-database stops reading a peer that announces a huge message, at once rather than at its connect timeout", async () => {
      // pg would buffer the announced 800 MB until its 8 s connect timeout; the cap ends it first.
      const report = await survives(endlessTcp, () => testConnection("postgres-database", postgresBody(endlessTcp)), 5000);
      failedLine(report);
    });
  });

  describe("a connection test against an answer that stalls after its headers", () => {
    for (const [type, body] of [
      ["goto-credentials", gotoBody],
      ["teamleader-connection", teamleaderBody],
      ["graph-app", graphBody],
      ["azure-storage-account", storageBody],
    ] as const) {
      it(`${type} answers by its deadline and aborts the request behind it`, async () => {
        const report = await survives(stalling, () => testConnection(type, body(stalling)));
        assert.match(failedLine(report).detail ?? "", /could not reach the service at 127\.0\.0\.1/);
      });
    }

    for (const [type, body] of [["smtp-connection", smtpBody], ["postgres-database", postgresBody]] as const) {
      it(`${type} answers by its deadline against a peer that never speaks, and closes the connection`, async () => {
        const report = await survives(silentTcp, () => testConnection(type, body(silentTcp)));
        assert.match(failedLine(report).detail ?? "", /could not reach the service at 127\.0\.0\.1/);
      });
    }
  });

  describe("a running pipeline against an endless answer", () => {
    const trigger = async (path: string) => {
      const res = await request(`${red.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}", headersTimeout: 60_000, bodyTimeout: 60_000 });
      return res.body.text();
    };

    it("goto-call-logs fails with the cap named in its error, and Node-RED goes on", async () => {
      const error = await survives(endless, () => trigger("/huge/calls"));
      assert.match(error, /answered with more than 1 MB to POST \/oauth\/token; is the host right\?/);
    });

    it("blob-csv-reader fails with the cap named in its error, and Node-RED goes on", async () => {
      const error = await survives(endless, () => trigger("/huge/blobs"));
      assert.match(error, /Azure Storage answered with more than 16 MB/);
    });
  });
});
