import { ChildProcess, fork } from "node:child_process";
import path from "node:path";
import { performance } from "node:perf_hooks";
import bcrypt from "bcryptjs";
import nodemailer from "nodemailer";
import pg from "pg";
import { request } from "undici";
import { TokenAuthority } from "../src/auth/jwt";
import { generateSecret, signingKeys } from "../src/auth/keys";
import { UserList } from "../src/auth/users";
import { eventually } from "../test/support/node-red";
import { NodeRedProcess, startNodeRed } from "../test/support/node-red-process";
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
    const rounds = quick ? 1 : 5;
    const warmUp = quick ? 0 : 2;
    const testDb = await createTestDatabase("gw_bench");
    // The mail server and the monitoring systems that post to the relay are elsewhere in life: each
    // has a process (an event loop) of its own here, so neither delays the other's answers.
    const outside = new Outside();
    const senders = new Outside();
    // Node-RED as users run it (not the test helper, whose spies on every node cost as much as the relay).
    const red = await startNodeRed({ env: { NODE_RED_LOG_LEVEL: "fatal" } });
    try {
      // The machine's two cores are shared by everything here, so single runs vary by a tenth or
      // more: each rate is the median of interleaved rounds.
      const pools: number[] = [];
      const emailNodes: number[] = [];
      const relays: Array<Awaited<ReturnType<typeof relayRun>>> = [];
      let unsettled = 0;
      // Warm-up rounds bring every side to its steady speed (the JIT, the pools, the SMTP thread);
      // the first is reported apart, as what a fresh process does.
      let cold: Record<string, number> = {};
      for (let round = -warmUp; round < rounds; round++) {
        if (round === 0 && warmUp) {
          cold = { relay: round1(relays[0]!.perSecond), nodemailer_pool: round1(pools[0]!), email_node: round1(emailNodes[0]!) };
          relays.length = pools.length = emailNodes.length = 0;
          unsettled = 0;
        }
        pools.push((await nodemailerPool(outside, messages)).perSecond);
        const emailNode = await emailNodeRun(outside, red, messages);
        emailNodes.push(emailNode.perSecond);
        unsettled += emailNode.unsettled;
        relays.push(await relayRun(outside, senders, red, messages, testDb));
      }
      const emailLimited = await emailNodeRun(outside, red, messages, LIMITED_CLIENTS);
      const relayLimited = await relayRun(outside, senders, red, messages, testDb, LIMITED_CLIENTS);
      const verify = jwtVerifyRate(quick ? 20_000 : 200_000, 0);
      const verifyRemembered = jwtVerifyRate(quick ? 20_000 : 200_000, 1000);
      const relay = median(relays.map((r) => r.perSecond));
      const pool = median(pools);
      const emailNode = median(emailNodes);
      return {
        relay_msgs_per_s: round1(relay),
        relay_accepted_msgs_per_s: round1(median(relays.map((r) => r.acceptedPerSecond))),
        nodemailer_pool_msgs_per_s: round1(pool),
        email_node_msgs_per_s: round1(emailNode),
        relay_vs_nodemailer_pool: Math.round((relay / pool) * 100) / 100,
        relay_vs_email_node: Math.round((relay / emailNode) * 100) / 100,
        rounds,
        warm_up_rounds: warmUp,
        rounds_msgs_per_s: { relay: relays.map((r) => round1(r.perSecond)), nodemailer_pool: pools.map(round1), email_node: emailNodes.map(round1) },
        cold_round_msgs_per_s: cold,
        relay_delivered_limited: relayLimited.delivered,
        email_node_delivered_limited: emailLimited.delivered,
        email_node_unsettled: unsettled + emailLimited.unsettled,
        lost: [...relays, relayLimited].reduce((n, r) => n + r.lost, 0),
        duplicated: [...relays, relayLimited].reduce((n, r) => n + r.duplicated, 0),
        jwt_verify_per_s: Math.round(verify),
        jwt_verify_remembered_per_s: Math.round(verifyRemembered),
        notes: `${messages} messages of about 500 bytes to one smtp-server sink with STARTTLS and AUTH on 127.0.0.1 (stock 100 ms greeting delay), run in a process of its own, the HTTP clients in another; the relay and the e-mail node run in one Node-RED process as users run it. Relay: ${HTTP_CONCURRENCY} concurrent HTTP clients with a Bearer token, http in → jwt-auth verify → mail-relay (outbox in PostgreSQL on 127.0.0.1) → http response, timed until the sink has every message (relay_accepted_msgs_per_s: until every HTTP request was answered 202); pool of ${POOL} connections. nodemailer: pool of ${POOL} connections, unlimited messages per connection, all sent at once. e-mail node: node-red-node-email 5.2.5, all messages handed to it at once by a function node, timed until complete and catch nodes have seen each settle (email_node_unsettled: sends still open 10 s after the last settle). Limited: the sink accepts ${LIMITED_CLIENTS} connections at once. Rates are medians of ${rounds} interleaved rounds (each round's figures in rounds_msgs_per_s) after ${warmUp} warm-up rounds (cold_round_msgs_per_s: the first of them, a fresh process). lost and duplicated count the relay's messages in all of its runs. jwt_verify_per_s: HS256 verify of one token in a loop, in full each time; jwt_verify_remembered_per_s: the same token found among those verified before (time and user still checked).`,
      };
    } finally {
      await outside.stop();
      await senders.stop();
      await red.stop();
      await testDb.drop();
    }
  },
};

/** The SMTP server or the HTTP clients, in a child process. */
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

async function emailNodeRun(outside: Outside, red: NodeRedProcess, messages: number, maxClients?: number) {
  const port = await outside.smtp(maxClients);
  // Each burst hands every message to the e-mail node at once; complete and catch count what it settled.
  const count = "global.set('settled', (global.get('settled') || 0) + 1); return null;";
  await red.deploy([
    { id: "tab", type: "tab", label: "peer" },
    { id: "email", type: "e-mail", z: "tab", name: "", server: "127.0.0.1", port: String(port), secure: false, tls: false, authtype: "BASIC", x: 500, y: 100, wires: [], credentials: { userid: SMTP.user, password: SMTP.pass } },
    { id: "burst", type: "http in", z: "tab", url: "/bench/burst", method: "post", x: 100, y: 100, wires: [["fan"]] },
    {
      id: "fan",
      type: "function",
      z: "tab",
      outputs: 2,
      x: 300,
      y: 100,
      func: "global.set('settled', 0); for (const text of msg.payload.bodies) node.send([{ payload: text, topic: 'Monitoring message', to: 'ops@example.com' }, null]); msg.payload = 'ok'; return [null, msg];",
      wires: [["email"], ["res"]],
    },
    { id: "complete", type: "complete", z: "tab", scope: ["email"], uncaught: false, x: 300, y: 200, wires: [["count"]] },
    { id: "catch", type: "catch", z: "tab", scope: ["email"], uncaught: false, x: 300, y: 240, wires: [["count"]] },
    { id: "count", type: "function", z: "tab", outputs: 1, x: 500, y: 220, func: count, wires: [] },
    { id: "settled", type: "http in", z: "tab", url: "/bench/settled", method: "get", x: 100, y: 300, wires: [["report"]] },
    { id: "report", type: "function", z: "tab", outputs: 1, x: 300, y: 300, func: "msg.payload = { settled: global.get('settled') || 0 }; return msg;", wires: [["res"]] },
    { id: "res", type: "http response", z: "tab", x: 700, y: 200, wires: [] },
  ]);
  await routeReady(`${red.url}/bench/settled`);
  const started = performance.now();
  const res = await request(`${red.url}/bench/burst`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ bodies: Array.from({ length: messages }, (_, i) => body(i)) }) });
  await res.body.dump();
  if (res.statusCode !== 200) throw new Error(`the burst was refused (${res.statusCode})`);
  // Until every message is settled; a send that hangs (the node's socket timeout is 10 minutes)
  // ends the wait once nothing has moved for 10 s, timed to the last settle.
  let settled = 0;
  let lastMove = performance.now();
  while (settled < messages && performance.now() - lastMove < 10_000) {
    await new Promise((r) => setTimeout(r, 25));
    const answer = await request(`${red.url}/bench/settled`);
    const now = ((await answer.body.json()) as { settled: number }).settled;
    if (now !== settled) {
      settled = now;
      lastMove = performance.now();
    }
  }
  const seconds = (lastMove - started) / 1000;
  await new Promise((r) => setTimeout(r, 500));
  const delivered = await outside.count();
  return { perSecond: delivered / seconds, delivered, unsettled: messages - settled };
}

async function relayRun(outside: Outside, senders: Outside, red: NodeRedProcess, messages: number, testDb: TestDatabase, maxClients?: number) {
  const port = await outside.smtp(maxClients);
  const secret = generateSecret();
  const users = `alertmanager:${bcrypt.hashSync("bench password", 4)}`;
  await red.deploy([
    { id: "tab", type: "tab", label: "bench" },
    { id: "key", type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api", clockTolerance: "30", credentials: { secret, users } },
    { id: "smtp", type: "smtp-connection", host: "127.0.0.1", port: String(port), security: "starttls", verifyCertificate: false, auth: "password", sender: "monitoring@example.com", poolSize: String(POOL), credentials: { user: SMTP.user, password: SMTP.pass } },
    { id: "db", type: "postgres-database", mode: "server", poolSize: "10", credentials: { url: testDb.url } },
    { id: "in", type: "http in", z: "tab", x: 100, y: 100, url: "/api/placeMessage", method: "post", wires: [["verify"]] },
    { id: "verify", type: "jwt-auth", z: "tab", x: 300, y: 100, key: "key", mode: "verify", fromHeader: true, fromBearer: true, wires: [["relay"], ["res"]] },
    { id: "relay", type: "mail-relay", z: "tab", x: 500, y: 100, smtp: "smtp", database: "db", to: "ops@example.com", allowed: "", subject: "Monitoring message", maxKiB: "256", retries: "5", retryDelay: "1", wires: [["res"], ["res"], []] },
    { id: "res", type: "http response", z: "tab", x: 700, y: 100, wires: [] },
    { id: "ready", type: "http in", z: "tab", x: 100, y: 200, url: "/bench/ready", method: "get", wires: [["res"]] },
  ]);
  await routeReady(`${red.url}/bench/ready`);
  // The same key as the jwt-auth-key node: a token its verify accepts.
  const authority = new TokenAuthority({ keys: signingKeys("HS256", { secret }), users: new UserList(users), issuer: "node-red", audience: "api" });
  const token = authority.issue("alertmanager", { lifetimeS: 3600 }).token;
  const db = new pg.Client(testDb.connection);
  await db.connect();
  try {
    await eventually(async () => (await db.query("SELECT to_regclass('gluework_mail_outbox') AS t")).rows[0].t, 20_000, "the outbox table");
    await db.query("DELETE FROM gluework_mail_outbox");
  } finally {
    await db.end();
  }
  const started = performance.now();
  const { ids, refused } = await senders.post(`${red.url}/api/placeMessage`, token, messages);
  const accepted = (performance.now() - started) / 1000;
  await arrived(outside, ids.length, "every accepted message at the sink");
  const seconds = (performance.now() - started) / 1000;
  await new Promise((r) => setTimeout(r, 1000)); // anything sent twice would arrive by now
  const received = await outside.messageIds();
  const distinct = new Set(received);
  const lost = ids.filter((id) => !distinct.has(`<${id}@example.com>`)).length + refused;
  return { perSecond: messages / seconds, acceptedPerSecond: messages / accepted, delivered: distinct.size, lost, duplicated: received.length - distinct.size };
}

/** HS256 verifies of one token per second: checked in full each time, and remembered (the relay's case). */
function jwtVerifyRate(rounds: number, cacheSize: number): number {
  const users = new UserList(`alertmanager:${bcrypt.hashSync("x", 4)}`);
  const authority = new TokenAuthority({ keys: signingKeys("HS256", { secret: generateSecret() }), users, issuer: "node-red", audience: "api", verifiedCacheSize: cacheSize });
  const { token } = authority.issue("alertmanager", { lifetimeS: 3600 });
  for (let i = 0; i < 2000; i++) authority.verify(token);
  const started = performance.now();
  for (let i = 0; i < rounds; i++) authority.verify(token);
  return rounds / ((performance.now() - started) / 1000);
}

/** A deploy answers before its flows have started: waits until the flow's route answers. */
async function routeReady(url: string): Promise<void> {
  await eventually(
    async () => {
      const res = await request(url);
      await res.body.dump();
      return res.statusCode === 200;
    },
    20_000,
    `${url} after the deploy`,
  );
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}
