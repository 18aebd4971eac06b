import assert from "node:assert/strict";
import net from "node:net";
import azureStorageAccount from "../../src/nodes/azure-storage-account";
import gotoCredentials from "../../src/nodes/goto-credentials";
import graphApp from "../../src/nodes/graph-app";
import postgresDatabase from "../../src/nodes/postgres-database";
import smtpConnection from "../../src/nodes/smtp-connection";
import teamleaderConnection from "../../src/nodes/teamleader-connection";
import { nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { testConnection } from "./report";

const helper = nodeRed();

/** A port whose peer behaves one way; `close` ends it. */
interface Behaviour {
  name: string;
  port: number;
  close(): Promise<void>;
}

async function serve(name: string, onConnection: (socket: net.Socket) => void): Promise<Behaviour> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
    onConnection(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    name,
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port nothing listens on: bound once, then let go. */
async function closedPort(): Promise<Behaviour> {
  const probe = await serve("refused", () => undefined);
  await probe.close();
  return { name: "refused", port: probe.port, close: async () => undefined };
}

/**
 * Every way a host and port can fail to be the service: refused, reset, closed at once, another
 * protocol (an SSH banner), and silence until the test's deadline.
 */
async function behaviours(): Promise<Behaviour[]> {
  return Promise.all([
    closedPort(),
    serve("reset", (socket) => socket.resetAndDestroy()),
    serve("accepted and closed", (socket) => socket.end()),
    serve("another protocol", (socket) => {
      socket.resume();
      socket.write("SSH-2.0-OpenSSH_9.6p1 Debian-4\r\n");
    }),
    serve("silent", (socket) => socket.resume()),
  ]);
}

describe("connection test network errors", function () {
  // Five behaviours per node type; a silent peer takes the test's whole 13 s.
  this.timeout(180_000);
  let ports: Behaviour[] = [];
  let db: TestDatabase;
  before(async () => {
    ports = await behaviours();
    db = await createTestDatabase();
  });
  after(async () => {
    await Promise.all(ports.map((p) => p.close()));
    await db?.drop();
  });
  afterEach(() => helper.unload());

  const local = (port: number) => `http://127.0.0.1:${port}`;
  const types: Array<{ type: string; body: (port: number) => Record<string, unknown> }> = [
    { type: "goto-credentials", body: (port) => ({ config: { authHost: local(port), apiHost: local(port), store: "file" }, credentials: { clientId: `goto-${port}`, clientSecret: "s3cr3t-for-tests", refreshToken: "r3fr3sh-for-tests" } }) },
    { type: "teamleader-connection", body: (port) => ({ config: { authHost: local(port), apiHost: local(port), redirectUri: "http://127.0.0.1:1880/tl/callback", database: "db" }, credentials: { clientId: `tl-${port}`, clientSecret: "s3cr3t-for-tests", refreshToken: "r3fr3sh-for-tests" } }) },
    { type: "graph-app", body: (port) => ({ config: { tenantId: "contoso.test", clientId: "3f0c6a51-6d8e-4b55-9a7e-0d5f6c2d1a11", authType: "secret", authorityHost: local(port), graphUrl: local(port) }, credentials: { clientSecret: "s3cr3t-for-tests" } }) },
    { type: "azure-storage-account", body: (port) => ({ config: { auth: "key", accountName: "devstoreaccount1", endpoint: `${local(port)}/devstoreaccount1` }, credentials: { accountKey: Buffer.from("key").toString("base64") }, options: { container: "audit" } }) },
    { type: "smtp-connection", body: (port) => ({ config: { host: "127.0.0.1", port: String(port), security: "none", auth: "none", sender: "desk@example.com" }, credentials: {} }) },
    { type: "postgres-database", body: (port) => ({ config: { mode: "server", host: "127.0.0.1", port: String(port), database: "test", ssl: "disable" }, credentials: { user: "postgres" } }) },
  ];

  for (const { type, body } of types) {
    it(`${type} reports refused, reset, closed, another protocol and silence with one text`, async () => {
      await helper.load(
        [postgresDatabase, gotoCredentials, teamleaderConnection, graphApp, azureStorageAccount, smtpConnection],
        [{ id: "db", type: "postgres-database", mode: "server", database: "x", ssl: "disable" }],
        { db: { url: db.url } },
      );
      const answers = await Promise.all(
        ports.map(async (peer) => {
          const report = await testConnection(type, { id: `${type}-${peer.port}`, ...body(peer.port) });
          const failed = report.checks.filter((l) => l.outcome === "failed");
          assert.equal(failed.length, 1, `${peer.name}: ${JSON.stringify(report.checks)}`);
          // The port is the one thing that differs: it is what the user typed.
          return { peer: peer.name, check: failed[0]!.check, detail: failed[0]!.detail!.split(String(peer.port)).join("<port>"), fix: failed[0]!.fix };
        }),
      );
      for (const answer of answers) {
        assert.match(answer.detail, /^could not reach the service at 127\.0\.0\.1:<port>$/, JSON.stringify(answer));
        assert.deepEqual({ check: answer.check, detail: answer.detail, fix: answer.fix }, { check: answers[0]!.check, detail: answers[0]!.detail, fix: answers[0]!.fix }, `${answer.peer} reads differently from ${answers[0]!.peer}`);
      }
      assert.match(answers[0]!.fix ?? "", /host and port[\s\S]*DNS[\s\S]*firewall/);
    });
  }
});
