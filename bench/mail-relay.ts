import { ChildProcess, fork } from "node:child_process";
import path from "node:path";
import { performance } from "node:perf_hooks";
import bcrypt from "bcryptjs";
import nodemailer from "nodemailer";
import jwtAuth from "../src/nodes/jwt-auth";
import jwtAuthKey from "../src/nodes/jwt-auth-key";
import mailRelay from "../src/nodes/mail-relay";
import postgresDatabase from "../src/nodes/postgres-database";
import smtpConnection from "../src/nodes/smtp-connection";
import { TokenAuthority } from "../src/auth/jwt";
import { generateSecret, signingKeys } from "../src/auth/keys";
import { UserList } from "../src/auth/users";
import { HttpNodeServer, coreNode } from "../test/support/http-nodes";
import { eventually, nodeRed } from "../test/support/node-red";
import { TestDatabase, createTestDatabase } from "../test/support/pg";
import { selfSignedCertificate } from "../test/support/tls";
import type { OutsideCommand } from "./fixtures/outside";
import type { Benchmark } from "./support";

const SMTP = { user: "relay@example.com", pass: "bench-password-0123" };
const POOL = 5;
const HTTP_CONCURRENCY = 50;
const LIMITED_CLIENTS = 10;

/**
 * The monitoring mail relay end to end against one smtp-server sink with STARTTLS and AUTH (which,
 * like every smtp-server, waits 100 ms before greeting a new connection), side by side with
 * nodemailer's pooled transport from a bare script (this machine's limit) and Node-RED's own
 * e-mail node; then the same against a server that takes only 10 connections at once.
 */
export const benchmark: Benchmark = {
  name: "mail-relay",
  async run({ quick }) {
    const messages = quick ? 100 : 1000;
    const testDb = await createTestDatabase("gw_bench");
    const http = new HttpNodeServer();
    await http.listen();
    const outside = new Outside();
    try {
      const pool = await nodemailerPool(outside, messages);
      const emailNode = await emailNodeRun(outside, messages);
      const relay = await relayRun(outside, messages, testDb, http);
      const emailLimited = await emailNodeRun(outside, messages, LIMITED_CLIENTS);
      const relayLimited = await relayRun(outside, messages, testDb, http, LIMITED_CLIENTS);
      const verify = jwtVerifyRate(quick ? 20_000 : 200_000);
      return {
        relay_msgs_per_s: round(relay.perSecond),
        nodemailer_pool_msgs_per_s: round(pool.perSecond),
        email_node_msgs_per_s: round(emailNode.perSecond),
        relay_delivered_limited: relayLimited.delivered,
        email_node_delivered_limited: emailLimited.delivered,
        lost: relay.lost + relayLimited.lost,
        duplicated: relay.duplicated + relayLimited.duplicated,
        jwt_verify_per_s: Math.round(verify),
        notes: `${messages} messages of about 500 bytes to one smtp-server sink with STARTTLS and AUTH on 127.0.0.1 (stock 100 ms greeting delay), run in a process of its own with the HTTP clients. Relay: ${HTTP_CONCURRENCY} concurrent HTTP clients with a Bearer token, http in → jwt-auth verify → mail-relay (outbox in PostgreSQL on 127.0.0.1) → http response, timed until the sink has every message; pool of ${POOL} connections. nodemailer: pool of ${POOL} connections, unlimited messages per connection, all sent at once. e-mail node: node-red-node-email 5.2.5, all messages handed to it at once. Limited: the sink accepts ${LIMITED_CLIENTS} connections at once. lost and duplicated count the relay's messages in both of its runs. jwt_verify_per_s: HS256 verify of one token in a loop.`,
      };
    } finally {
      await outside.stop();
      await http.close();
      await testDb.drop();
    }
  },
};

/** The SMTP server and the HTTP clients, in a child process. */
class Outside {
  private child?: ChildProcess;
  private queue: Array<{ resolve: (v: any) => void; reject: (e: Error) => void }> = [];

  async smtp(maxClients?: number): Promise<number> {
    return this.call({ cmd: "smtp", tls: selfSignedCertificate(), auth: SMTP, maxClients });
  }

  count(): Promise<number> {
    return this.call({ cmd: "count" });
  }

  messageIds(): Promise<Array<string | undefined>> {
    return this.call({ cmd: "messageIds" });
  }

  post(url: string, token: string, count: number): Promise<{ ids: string[]; refused: number }> {
    return this.call({ cmd: "post", url, token, count, concurrency: HTTP_CONCURRENCY, body: Array.from({ length: 50 }, (_, i) => body(i)) });
  }

  async stop(): Promise<void> {
    if (!this.child) return;
    const exited = new Promise((r) => this.child!.once("exit", r));
    await this.call({ cmd: "stop" }).catch(() => undefined);
    await exited;
    this.child = undefined;
  }

  private call<T>(command: OutsideCommand): Promise<T> {
    if (!this.child) {
      this.child = fork(path.join(__dirname, "fixtures", "outside.js"), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
      this.child.on("message", (m: { ok: boolean; result?: unknown; error?: string }) => {
        const waiter = this.queue.shift();
        if (m.ok) waiter?.resolve(m.result);
        else waiter?.reject(new Error(m.error));
      });
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ resolve, reject });
      this.child!.send(command);
    });
  }
}

async function arrived(outside: Outside, messages: number, what: string): Promise<void> {
  await eventually(async () => (await outside.count()) >= messages, 180_000, what);
}

function body(i: number): string {
  return `Bench message ${i}\nhost=db-${i % 7} check=disk value=${90 + (i % 10)}%\nThe disk on this host is almost full; please look at it.`;
}

async function nodemailerPool(outside: Outside, messages: number) {
  const port = await outside.smtp();
  const transport = nodemailer.createTransport({
    pool: true,
    maxConnections: POOL,
    maxMessages: Infinity,
    host: "127.0.0.1",
    port,
    secure: false,
    requireTLS: true,
    tls: { rejectUnauthorized: false },
    auth: SMTP,
  });
  try {
    const started = performance.now();
    await Promise.all(Array.from({ length: messages }, (_, i) => transport.sendMail({ from: "monitoring@example.com", to: "ops@example.com", subject: "Monitoring message", text: body(i) })));
    await arrived(outside, messages, "every message at the sink");
    return { perSecond: messages / ((performance.now() - started) / 1000) };
  } finally {
    transport.close();
  }
}

async function emailNodeRun(outside: Outside, messages: number, maxClients?: number) {
  const helper = nodeRed();
  const port = await outside.smtp(maxClients);
  const emailNode = require("node-red-node-email/61-email.js");
  await helper.load(emailNode, [{ id: "tab", type: "tab", label: "peer" }, { id: "email", type: "e-mail", name: "", server: "127.0.0.1", port: String(port), secure: false, tls: false, authtype: "BASIC", x: 100, y: 100, z: "tab", wires: [] }], {
    email: { userid: SMTP.user, password: SMTP.pass },
  });
  try {
    const node = helper.getNode("email");
    let settled = 0;
    node.on("call:log", () => settled++);
    node.on("call:error", () => settled++);
    const started = performance.now();
    for (let i = 0; i < messages; i++) node.receive({ payload: body(i), topic: "Monitoring message", to: "ops@example.com" });
    await eventually(() => settled >= messages, 180_000, "the e-mail node to settle every message");
    const seconds = (performance.now() - started) / 1000;
    await new Promise((r) => setTimeout(r, 500));
    const delivered = await outside.count();
    return { perSecond: delivered / seconds, delivered };
  } finally {
    await helper.unload();
  }
}

async function relayRun(outside: Outside, messages: number, testDb: TestDatabase, http: HttpNodeServer, maxClients?: number) {
  const helper = nodeRed();
  const port = await outside.smtp(maxClients);
  const secret = generateSecret();
  const flow = [
    { id: "tab", type: "tab", label: "bench" },
    { id: "key", type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api", clockTolerance: "30" },
    { id: "smtp", type: "smtp-connection", host: "127.0.0.1", port: String(port), security: "starttls", verifyCertificate: false, auth: "password", sender: "monitoring@example.com", poolSize: String(POOL) },
    { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "10" },
    { id: "in", type: "http in", z: "tab", x: 100, y: 100, url: "/api/placeMessage", method: "post", wires: [["verify"]] },
    { id: "verify", type: "jwt-auth", z: "tab", x: 300, y: 100, key: "key", mode: "verify", fromHeader: true, fromBearer: true, wires: [["relay"], ["res"]] },
    { id: "relay", type: "mail-relay", z: "tab", x: 500, y: 100, smtp: "smtp", database: "db", to: "ops@example.com", allowed: "", subject: "Monitoring message", maxKiB: "256", retries: "5", retryDelay: "1", wires: [["res"], ["res"], []] },
    { id: "res", type: "http response", z: "tab", x: 700, y: 100, wires: [] },
  ];
  const nodes = [jwtAuth, jwtAuthKey, mailRelay, smtpConnection, postgresDatabase, coreNode("network/21-httpin.js"), http.capture];
  await helper.load(nodes, flow, { key: { secret, users: `alertmanager:${bcrypt.hashSync("bench password", 4)}` }, smtp: { user: SMTP.user, password: SMTP.pass }, db: { user: String(testDb.connection.user) } });
  try {
    const token = helper.getNode("key").authority().issue("alertmanager", { lifetimeS: 3600 }).token;
    const db = await helper.getNode("db").database();
    await eventually(async () => (await db.query("SELECT to_regclass('gluework_mail_outbox') AS t")).rows[0].t, 20_000, "the outbox table");
    await db.query("DELETE FROM gluework_mail_outbox");
    const started = performance.now();
    const { ids, refused } = await outside.post(`${http.url}/api/placeMessage`, token, messages);
    await arrived(outside, ids.length, "every accepted message at the sink");
    const seconds = (performance.now() - started) / 1000;
    await new Promise((r) => setTimeout(r, 1000)); // anything sent twice would arrive by now
    const received = await outside.messageIds();
    const distinct = new Set(received);
    const lost = ids.filter((id) => !distinct.has(`<${id}@example.com>`)).length + refused;
    return { perSecond: messages / seconds, delivered: distinct.size, lost, duplicated: received.length - distinct.size };
  } finally {
    await helper.unload();
  }
}

function jwtVerifyRate(rounds: number): number {
  const users = new UserList(`alertmanager:${bcrypt.hashSync("x", 4)}`);
  const authority = new TokenAuthority({ keys: signingKeys("HS256", { secret: generateSecret() }), users, issuer: "node-red", audience: "api" });
  const { token } = authority.issue("alertmanager", { lifetimeS: 3600 });
  for (let i = 0; i < 2000; i++) authority.verify(token);
  const started = performance.now();
  for (let i = 0; i < rounds; i++) authority.verify(token);
  return rounds / ((performance.now() - started) / 1000);
}

function round(n: number): number {
  return Math.round(n * 10) / 10;
}
