// `npm start`: Node-RED with every pipeline of flows/ deployed against local stand-ins: the
// sandbox for GoTo, Teamleader and Microsoft, Azurite for Azure Blob, a local SMTP server that
// keeps what it receives, and the embedded database unless DATABASE_URL names a server. State
// lives in one folder (.state/ unless GW_STATE_DIR says otherwise); Ctrl-C stops everything.
import { ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { request } from "undici";
import { readCapped } from "../core/http/client";
import { Sandbox } from "../sandbox";
import { AZURITE_ACCOUNT, Azurite } from "../sandbox/azurite";
import { SmtpSink } from "../sandbox/smtp-sink";
import { DemoEnvironment, demoFlows, secretKeeper } from "./environment";

const repoRoot = path.resolve(__dirname, "..", "..", "..");
const host = process.env.HOST ?? "127.0.0.1";
const ports = {
  nodeRed: Number(process.env.NODE_RED_PORT ?? 1880),
  sandbox: Number(process.env.SANDBOX_PORT ?? 8780),
  azurite: Number(process.env.AZURITE_PORT ?? 10000),
  smtp: Number(process.env.SMTP_PORT ?? 2525),
};
// Node-RED may listen wider (HOST); the stand-ins stay on loopback.
const loopback = "127.0.0.1";

async function main(): Promise<void> {
  const stateDir = path.resolve(process.env.GW_STATE_DIR ?? path.join(repoRoot, ".state"));
  const userDir = path.join(stateDir, "node-red");
  await fs.mkdir(userDir, { recursive: true });
  const secret = secretKeeper(path.join(stateDir, "demo-secrets.json"));

  const stops: Array<() => Promise<void>> = [];
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say("stopping…");
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
    process.exit(code);
  };
  process.on("SIGINT", () => void stopAll(0));
  process.on("SIGTERM", () => void stopAll(0));

  try {
    const sandbox = new Sandbox();
    sandbox.server.persistTo(path.join(stateDir, "sandbox.json"));
    await sandbox.listen(ports.sandbox, loopback);
    stops.push(() => sandbox.close());

    const azurite = new Azurite({ port: ports.azurite, host: loopback, location: path.join(stateDir, "azurite"), detached: true });
    process.once("exit", () => void azurite.stop());
    await fs.mkdir(path.join(stateDir, "azurite"), { recursive: true });
    await azurite.start();
    stops.push(() => azurite.stop());

    const mailDir = path.join(stateDir, "mail");
    const smtp = new SmtpSink({ dir: mailDir });
    await smtp.listen(ports.smtp, loopback);
    stops.push(() => smtp.close());

    const env: DemoEnvironment = {
      stateDir,
      sandbox,
      azurite: { blobUrl: azurite.blobUrl, connectionString: azurite.connectionString, accountName: AZURITE_ACCOUNT.name, accountKey: AZURITE_ACCOUNT.key },
      smtp: { host: loopback, port: smtp.port, dir: mailDir },
      databaseUrl: process.env.DATABASE_URL || undefined,
      nodeRedUrl: `http://${host === "0.0.0.0" ? loopback : host}:${ports.nodeRed}`,
      secret,
    };

    const credentialSecret = await secret("node-red-credential-secret", () => randomBytes(32).toString("hex"));
    const nodeRed = startNodeRed(userDir, credentialSecret);
    stops.push(() => stopChild(nodeRed));
    nodeRed.once("exit", (code) => {
      if (!stopping) {
        say(`Node-RED exited (${code}); stopping the rest`);
        void stopAll(1);
      }
    });

    const adminUrl = `http://${host === "0.0.0.0" ? loopback : host}:${ports.nodeRed}`;
    await waitForNodeRed(adminUrl);
    const flows = await demoFlows(path.join(repoRoot, "flows"), env);
    await deploy(adminUrl, flows);
    await waitForRoutes(adminUrl, flows);

    say(`
  Node-RED editor   ${adminUrl}/
  Support board     ${adminUrl}/dashboard/board  (reports: ${adminUrl}/reports)
  Health page       ${adminUrl}/dashboard/operations  (every pipeline's runs)
  Sandbox           ${sandbox.url}  (GoTo, Teamleader, Microsoft stand-ins; ${sandbox.url}/_sandbox/stats)
  Azure Blob        ${azurite.blobUrl}  (Azurite; the account is Azurite's public development account)
  SMTP              ${loopback}:${smtp.port}  (each mail kept as an .eml file in ${mailDir})
  Database          ${env.databaseUrl ? "the PostgreSQL server in DATABASE_URL" : `embedded PostgreSQL, in ${path.join(userDir, "gluework", "postgres")}`}
  State             ${stateDir}

  ${flows.filter((n) => n.type === "tab").length} flows deployed from flows/. Ctrl-C stops everything.`);
  } catch (err) {
    say(`could not start: ${(err as Error).message}`);
    await stopAll(1);
  }
}

function startNodeRed(userDir: string, credentialSecret: string): ChildProcess {
  const red = path.join(path.dirname(require.resolve("node-red/package.json")), "red.js");
  const settings = path.join(__dirname, "settings.js");
  // A process group of its own (Azurite too): Ctrl-C in the terminal reaches only this launcher,
  // which stops Node-RED first (its flows close their databases and files) and the stand-ins after
  // it. Otherwise every process got the signal at once: the embedded database went before the
  // flows using it ("database connection lost"), and Azurite before the blob writers' last commit.
  const child = spawn(process.execPath, [red, "--userDir", userDir, "--settings", settings], {
    stdio: "inherit",
    detached: true,
    env: { ...process.env, NODE_RED_PORT: String(ports.nodeRed), NODE_RED_CREDENTIAL_SECRET: credentialSecret },
  });
  process.once("exit", () => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  return child;
}

async function waitForNodeRed(adminUrl: string): Promise<void> {
  const deadline = Date.now() + 90_000;
  for (;;) {
    try {
      const res = await request(`${adminUrl}/settings`);
      await res.body.dump();
      if (res.statusCode === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error("Node-RED did not answer within 90 s");
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** A full deploy through the admin API, credentials included: Node-RED encrypts and keeps them. */
async function deploy(adminUrl: string, flows: unknown[]): Promise<void> {
  const res = await readCapped(new URL(`${adminUrl}/flows`), {
    method: "POST",
    headers: { "content-type": "application/json", "node-red-deployment-type": "full", "node-red-api-version": "v1" },
    body: JSON.stringify(flows),
    timeoutMs: 60_000,
    maxBytes: 1024 * 1024,
    name: "Node-RED",
  });
  const text = res.text;
  if (res.status >= 300) throw new Error(`Node-RED refused the flows (${res.status}): ${text}`);
}

/**
 * Node-RED answers a deploy before it has started the flows: the demo speaks only once every
 * HTTP route of the flows, and each dashboard page, answers. An OPTIONS request finds a route of
 * any method (the web server lists the route's methods) without running the flow behind it.
 */
async function waitForRoutes(adminUrl: string, flows: Array<Record<string, unknown>>): Promise<void> {
  const bases = flows.filter((n) => n.type === "ui-base").map((n) => String(n.path ?? "/dashboard"));
  const checks = [
    ...flows.filter((n) => n.type === "http in" && typeof n.url === "string").map((n) => ({ method: "OPTIONS" as const, url: String(n.url).replace(/\/:[^/]+/g, "/x") })),
    ...flows.filter((n) => n.type === "ui-page" && typeof n.path === "string").flatMap((n) => bases.map((b) => ({ method: "GET" as const, url: `${b}${String(n.path)}` }))),
  ].map((c) => ({ ...c, url: c.url.startsWith("/") ? c.url : `/${c.url}` }));
  const deadline = Date.now() + 120_000;
  let waiting = checks;
  while (waiting.length) {
    const answers = await Promise.all(
      waiting.map(async (c) => {
        try {
          const res = await request(`${adminUrl}${c.url}`, { method: c.method, headersTimeout: 10_000, bodyTimeout: 10_000 });
          await res.body.dump();
          return res.statusCode !== 404;
        } catch {
          return false;
        }
      }),
    );
    waiting = waiting.filter((_, i) => !answers[i]);
    if (!waiting.length) return;
    if (Date.now() > deadline) {
      say(`the flows were deployed, but ${waiting.map((c) => c.url).join(", ")} did not answer within 120 s: see the Node-RED log above`);
      return;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const force = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.once("exit", () => {
      clearTimeout(force);
      resolve();
    });
    child.kill("SIGINT");
  });
}

function say(text: string): void {
  process.stdout.write(`[gluework] ${text}\n`);
}

void main();
