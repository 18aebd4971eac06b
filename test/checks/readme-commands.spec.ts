import assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, promises as fs, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { BlobServiceClient } from "@azure/storage-blob";
import { request } from "undici";
import { freePort } from "../../src/sandbox/azurite";
import { launchChromium } from "../support/browser";
import { eventually } from "../support/node-red";
import { createTestDatabase } from "../support/pg";

// The README's commands, taken from its code blocks (and its inline `curl …`), run as a reader runs
// them from this folder, with every port moved off its default. A command added to the README,
// or changed, fails here until it runs and this file says what it should do.

const repoRoot = path.resolve(__dirname, "..", "..", "..");
const readme = readFileSync(path.join(repoRoot, "README.md"), "utf8");
const DEFAULT_PORTS = { NODE_RED_PORT: 1880, SANDBOX_PORT: 8780, AZURITE_PORT: 10000, SMTP_PORT: 2525 };
type PortName = keyof typeof DEFAULT_PORTS;

interface ReadmeBlock {
  line: number;
  commands: string[];
}

/** The shell commands of the README: each ```sh block (backslash lines joined, comments dropped), then inline `curl …` spans. */
function readmeCommands(text: string): ReadmeBlock[] {
  const lines = text.split("\n");
  const blocks: ReadmeBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const fence = /^(\s*)```(sh|bash|shell)\s*$/.exec(lines[i]!);
    if (!fence) continue;
    const commands: string[] = [];
    let current = "";
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) {
      const line = lines[j]!.slice(fence[1]!.length);
      current = current ? `${current}\n${line}` : line;
      if (/\\$/.test(line)) continue;
      if (current.trim() && !/^\s*#/.test(current)) commands.push(current.trim());
      current = "";
    }
    blocks.push({ line: i + 1, commands });
    i = j;
  }
  lines.forEach((line, i) => {
    for (const m of line.matchAll(/`(curl [^`]+)`/g)) blocks.push({ line: i + 1, commands: [m[1]!] });
  });
  return blocks;
}

/**
 * A line that sets a variable for the reader's own Node-RED may say what it is under `npm start`
 * (`dir=~/.node-red/… # under \`npm start\`: dir=…`): the demo's value is the one run here.
 */
function underNpmStart(command: string): string {
  const alternative = /#\s*under `npm start`:\s*(\w+=\S+)\s*$/.exec(command);
  return alternative ? alternative[1]! : command;
}

interface CommandResult {
  command: string;
  rc: number;
  /** What it printed (stdout and stderr), without the HTTP statuses. */
  out: string;
  /** The HTTP status of each request curl made, in order. */
  statuses: number[];
  /** For an assignment (`NAME=…`): the value's length. */
  assigned?: number;
}

interface Context {
  base: string;
  ports: Record<PortName, number>;
  stateDir: string;
  azArgs: string;
  output: () => string;
}

interface Expectation {
  pattern: RegExp;
  before?(ctx: Context): Promise<void>;
  check(result: CommandResult, ctx: Context): void | Promise<void>;
  /** What the command reads on its standard input. */
  stdin?: string;
}

const json = (r: CommandResult) => JSON.parse(r.out) as any;
const assigned = (min: number) => (r: CommandResult) => assert.ok((r.assigned ?? 0) >= min, `${r.command} set nothing`);

const azurite = (ctx: Context) =>
  BlobServiceClient.fromConnectionString(
    `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;BlobEndpoint=http://127.0.0.1:${ctx.ports.AZURITE_PORT}/devstoreaccount1`,
  );

async function blobNames(client: BlobServiceClient, container: string): Promise<string[]> {
  const names: string[] = [];
  const box = client.getContainerClient(container);
  if (!(await box.exists())) return names;
  for await (const blob of box.listBlobsFlat()) names.push(blob.name);
  return names;
}

async function inject(ctx: Context, id: string): Promise<void> {
  const res = await request(`${ctx.base}/inject/${id}`, { method: "POST" });
  await res.body.dump();
  assert.equal(res.statusCode, 200, `inject ${id}`);
}

/** What each README command does; a command matching none of these fails the test. */
const EXPECTATIONS: Expectation[] = [
  { pattern: /^dir=/, check: assigned(1) },
  {
    pattern: /^PGPASSWORD=.*\bpsql\b/,
    stdin: "select 'readme psql as ' || current_user;\n",
    async before(ctx) {
      const pid = path.join(ctx.stateDir, "node-red", "gluework", "postgres", "data", "postmaster.pid");
      await eventually(() => existsSync(pid) && readFileSync(pid, "utf8").split("\n").length > 4, 60_000, "the embedded server to run");
    },
    check: (r) => assert.match(r.out, /readme psql as postgres/),
  },
  {
    pattern: /^az storage blob list /,
    async before(ctx) {
      await inject(ctx, "gw-calllogs-nightly");
      await eventually(async () => (await blobNames(azurite(ctx), "call-logs")).some((n) => n.endsWith("_call_logs.csv")), 60_000, "yesterday's call-log file");
    },
    async check(r, ctx) {
      if (existsSync(ctx.azArgs)) {
        // No Azure CLI here: list what it was asked for, with the account and container it was given.
        const args = readFileSync(ctx.azArgs, "utf8").split("\0").slice(0, -1);
        const at = (flag: string) => args[args.indexOf(flag) + 1]!;
        const names = await blobNames(BlobServiceClient.fromConnectionString(at("--connection-string")), at("-c"));
        assert.ok(names.some((n) => n.endsWith("_call_logs.csv")), `the files: ${names.join(", ")}`);
      } else {
        assert.match(r.out, /_call_logs\.csv/);
      }
    },
  },
  {
    pattern: /\/_sandbox\/goto\/call-reports .*"paging":"ignore-page"/,
    async check(r, ctx) {
      assert.deepEqual(r.statuses, [204]);
      // The next run stops with an error naming the day and one page; the example's debug node
      // prints that text to the log, with no stack.
      await inject(ctx, "gw-calllogs-nightly");
      const line = await eventually(() => ctx.output().split("\n").find((l) => /\[debug:error\]/.test(l)), 60_000, "the paging error in the log").catch((err: Error) => {
        throw new Error(`${err.message}; the log ends:\n${ctx.output().slice(-3000)}`);
      });
      const next = ctx.output().split("\n")[ctx.output().split("\n").indexOf(line) + 1] ?? "";
      assert.match(line, /\[debug:error\] GoTo's call data for \d{4}-\d\d-\d\d: page 2 of .+ repeated records already read, so the day was stopped there/);
      assert.equal(line.match(/\bpages? \d/g)?.length, 1, `one page named: ${line}`);
      assert.doesNotMatch(`${line}\n${next}`, /stack|\{|\n\s+at /, "a short text, not an error object");
    },
  },
  { pattern: /\/_sandbox\/goto\/call-reports .*"paging":"page"/, check: (r) => assert.deepEqual(r.statuses, [204]) },
  { pattern: /^PASSWORD=\$\(node -p /, check: assigned(8) },
  { pattern: /^TOKEN=\$\(curl .*\/api\/loginUser /, check: assigned(20) },
  {
    pattern: /^curl -X POST \S+\/provision /,
    check(r) {
      assert.deepEqual(r.statuses, [200]);
      assert.equal(json(r).result, "created");
      assert.match(json(r).userKey, /^\d{19,}$/);
    },
  },
  {
    pattern: /^curl -X POST \S+\/deprovision /,
    check(r) {
      assert.deepEqual(r.statuses, [200]);
      assert.equal(json(r).result, "deleted");
    },
  },
  {
    pattern: /^curl \S+\/_sandbox\/goto\/admin\s/,
    check(r) {
      assert.deepEqual(r.statuses, [200]);
      const account = json(r);
      assert.ok(account.licenses.length > 0);
      assert.ok(!account.users.some((u: { email: string }) => /fien\.peeters\+it/i.test(u.email)), "the deprovisioned user is gone");
    },
  },
  { pattern: /^curl -X POST \S+\/_sandbox\/goto\/admin .*"reset":true/, check: (r) => assert.deepEqual(r.statuses, [204]) },
  {
    pattern: /^curl \S+\/api\/test /,
    check(r) {
      assert.deepEqual(r.statuses, [200]);
      assert.match(r.out, /Authorized/);
    },
  },
  {
    pattern: /^curl -X POST \S+\/api\/placeMessage /,
    async check(r, ctx) {
      assert.deepEqual(r.statuses, [202]);
      assert.ok(json(r).id);
      const mailDir = path.join(ctx.stateDir, "mail");
      await eventually(
        async () => {
          for (const file of await fs.readdir(mailDir).catch(() => [] as string[])) {
            if (file.endsWith(".eml") && (await fs.readFile(path.join(mailDir, file), "utf8")).includes("hello")) return true;
          }
          return false;
        },
        30_000,
        "the mail in the state folder",
      );
    },
  },
  {
    pattern: /^curl -X POST \S+\/monitor .*adele\.vance/,
    check(r) {
      assert.deepEqual(r.statuses, [200]);
      assert.equal(json(r).displayName, "Adele Vance");
    },
  },
  {
    pattern: /^curl -X POST \S+\/monitor .*nobody@/,
    check(r) {
      assert.deepEqual(r.statuses, [404]);
      assert.equal(json(r).error, "not-found");
    },
  },
  { pattern: /^curl -X POST \S+\/_sandbox\/graph\/users\/[^/]+\/replies /, check: (r) => assert.deepEqual(r.statuses, [204]) },
];

/** Runs a block's commands in one shell, in this folder, and tells what each did. */
async function runBlock(commands: string[], env: NodeJS.ProcessEnv, stdin = ""): Promise<CommandResult[]> {
  const script = commands
    .map((command, i) => {
      const name = /^(\w+)=/.exec(command)?.[1];
      // curl reports each request's status on stderr, so the command's own output stays as it is.
      return [`printf '\\n::begin ${i}\\n'`, command, `__rc=$?; printf '\\n::end ${i} %d\\n' $__rc`, name ? `printf '::assigned %d\\n' "\${#${name}}"` : ""].join("\n");
    })
    .join("\n");
  const child = spawn("bash", ["--noprofile", "--norc", "-c", script], { cwd: repoRoot, env, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString()));
  child.stderr.on("data", (c: Buffer) => (out += c.toString()));
  child.stdin.end(stdin);
  await new Promise((resolve) => child.once("close", resolve));
  return commands.map((command, i) => {
    const part = out.slice(out.indexOf(`::begin ${i}\n`) + `::begin ${i}\n`.length, out.indexOf(`\n::end ${i} `));
    const end = new RegExp(`::end ${i} (\\d+)\\n(?:::assigned (\\d+))?`).exec(out);
    assert.ok(end, `the shell did not finish ${command}:\n${out}`);
    return {
      command,
      rc: Number(end[1]),
      out: part.replace(/\n?::status \d+\n/g, "\n").trim(),
      statuses: [...part.matchAll(/::status (\d+)/g)].map((m) => Number(m[1])),
      assigned: end[2] === undefined ? undefined : Number(end[2]),
    };
  });
}

describe("the README's commands, with the ports moved", function () {
  this.timeout(120_000);
  const blocks = readmeCommands(readme);
  const npmCommands = blocks.flatMap((b) => b.commands).filter((c) => /^npm /.test(c));
  const shellBlocks = blocks.map((b) => ({ ...b, commands: b.commands.filter((c) => !/^npm /.test(c)) })).filter((b) => b.commands.length);
  let demo: ChildProcess;
  let exited: Promise<number | null>;
  let output = "";
  let ctx: Context;
  let env: NodeJS.ProcessEnv;

  before(async () => {
    const ports = Object.fromEntries(await Promise.all(Object.keys(DEFAULT_PORTS).map(async (k) => [k, await freePort()]))) as Record<PortName, number>;
    const stateDir = mkdtempSync(path.join(os.tmpdir(), "gw-readme-"));
    const tools = mkdtempSync(path.join(os.tmpdir(), "gw-readme-tools-"));
    ctx = { base: `http://127.0.0.1:${ports.NODE_RED_PORT}`, ports, stateDir, azArgs: path.join(tools, "az-args"), output: () => output };
    // curl as written, quiet, with each answer's status on stderr; an `az` that records what it
    // was asked when the Azure CLI is not installed here.
    writeFileSync(path.join(tools, ".curlrc"), 'silent\nshow-error\nwrite-out = "%{stderr}\\n::status %{http_code}\\n"\n');
    const hasAz = (await new Promise<number | null>((resolve) => spawn("bash", ["-c", "command -v az"], { stdio: "ignore" }).once("exit", resolve))) === 0;
    if (!hasAz) {
      mkdirSync(path.join(tools, "bin"));
      writeFileSync(path.join(tools, "bin", "az"), `#!/bin/sh\nprintf '%s\\0' "$@" > '${ctx.azArgs}'\n`, { mode: 0o755 });
    }
    env = {
      ...process.env,
      ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
      GW_STATE_DIR: stateDir,
      CURL_HOME: tools,
      PATH: [hasAz ? "" : path.join(tools, "bin"), path.dirname(process.execPath), process.env.PATH].filter(Boolean).join(path.delimiter),
    };
    delete env.DATABASE_URL;
    delete env.HOST;

    // `npm start` is the build, then the demo: run the demo (the build is done).
    const start = (require(path.join(repoRoot, "package.json")) as { scripts: Record<string, string> }).scripts.start!.split("&&").map((s) => s.trim());
    assert.equal(start[0], "npm run build");
    const [program, ...args] = start.at(-1)!.split(/\s+/);
    assert.equal(program, "node");
    demo = spawn(process.execPath, args, { cwd: repoRoot, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    demo.stdout!.on("data", (c: Buffer) => (output += c.toString()));
    demo.stderr!.on("data", (c: Buffer) => (output += c.toString()));
    exited = new Promise((resolve) => demo.once("exit", (code) => resolve(code)));
    await eventually(() => output.includes("Ctrl-C stops everything") || demo.exitCode !== null, 90_000, "npm start to deploy the flows");
    assert.equal(demo.exitCode, null, `npm start ended:\n${output}`);
  });

  after(async function () {
    this.timeout(30_000);
    if (demo?.exitCode === null) {
      process.kill(-demo.pid!, "SIGINT");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
      if (demo.exitCode === null) process.kill(-demo.pid!, "SIGKILL");
    }
    for (const dir of ctx ? [ctx.stateDir, path.dirname(ctx.azArgs)] : []) await fs.rm(dir, { recursive: true, force: true }).catch(() => undefined);
  });

  it("has the commands this test knows: npm start and npm test, and one expectation for every other", () => {
    assert.deepEqual(
      npmCommands.map((c) => c.replace(/\s+#.*$/, "")),
      ["npm install && npm start", "npm install && npm test"],
    );
    for (const command of shellBlocks.flatMap((b) => b.commands).map(underNpmStart)) {
      const matches = EXPECTATIONS.filter((e) => e.pattern.test(command));
      assert.equal(matches.length, 1, `README command with ${matches.length} expectations in this test: ${command}`);
    }
  });

  it("names no fixed port in a command: each follows its variable", () => {
    for (const command of shellBlocks.flatMap((b) => b.commands)) {
      for (const m of command.matchAll(/(?:127\.0\.0\.1|localhost):(\S+?)(?=\/|\s|"|;|$)/g)) {
        assert.match(m[1]!, /^\$\{(NODE_RED|SANDBOX|AZURITE|SMTP)_PORT:-\d+\}$/, `a fixed port in: ${command}`);
      }
    }
  });

  it("npm start: the demo comes up on the moved ports with every pipeline deployed", async () => {
    const res = await request(`${ctx.base}/flows`, { headers: { "node-red-api-version": "v1" } });
    const deployed = new Set(((await res.body.json()) as Array<{ id: string }>).map((n) => n.id));
    const files = (await fs.readdir(path.join(repoRoot, "flows"))).filter((f) => f.endsWith(".json"));
    assert.equal(files.length, 7);
    for (const file of files) {
      const nodes = JSON.parse(readFileSync(path.join(repoRoot, "flows", file), "utf8")) as Array<{ id: string; type: string }>;
      // Dashboard 2.0 serves one ui-base: the demo keeps the first flow's, as the editor does.
      const missing = nodes.filter((n) => !deployed.has(n.id) && n.type !== "ui-base").map((n) => n.id);
      assert.deepEqual(missing, [], `${file} is not deployed whole`);
    }
    for (const [name, port] of Object.entries(ctx.ports)) assert.ok(output.includes(`:${port}`), `npm start names ${name} ${port}`);
    const stats = await request(`http://127.0.0.1:${ctx.ports.SANDBOX_PORT}/_sandbox/stats`);
    assert.equal(stats.statusCode, 200, "the sandbox answers on its moved port");
    await stats.body.dump();
    assert.ok(await azurite(ctx).getProperties(), "Azurite answers on its moved port");
  });

  it("npm start: every address the README gives answers on its moved port", async () => {
    const links = [...readme.matchAll(/<http:\/\/127\.0\.0\.1:(\d+)(\/[^>]*)?>/g)];
    assert.ok(links.length >= 5);
    for (const [, port, pathname] of links) {
      const name = (Object.keys(DEFAULT_PORTS) as PortName[]).find((k) => DEFAULT_PORTS[k] === Number(port));
      assert.ok(name, `a README address on an unknown port ${port}`);
      const res = await request(`http://127.0.0.1:${ctx.ports[name]}${pathname ?? "/"}`);
      await res.body.dump();
      // Azurite answers a plain browser request for its account with 400, as the README says.
      assert.ok(res.statusCode < 400 || (name === "AZURITE_PORT" && res.statusCode === 400), `${pathname}: ${res.statusCode}`);
    }
  });

  it("npm test: says how to get Chromium and PostgreSQL when either is missing", async () => {
    const saved = { CHROMIUM_PATH: process.env.CHROMIUM_PATH, PGPORT: process.env.PGPORT };
    try {
      process.env.CHROMIUM_PATH = path.join(ctx.stateDir, "no-chromium-here");
      await assert.rejects(launchChromium(), /need Chromium.*apt-get install chromium.*CHROMIUM_PATH/s);
      process.env.PGPORT = String(await freePort());
      await assert.rejects(createTestDatabase(), new RegExp(`need a PostgreSQL server at ${(process.env.PGHOST ?? "127.0.0.1").replace(/\./g, "\\.")}:${process.env.PGPORT}.*apt-get install postgresql.*PGHOST`, "s"));
    } finally {
      for (const [k, v] of Object.entries(saved)) v === undefined ? delete process.env[k] : (process.env[k] = v);
    }
  });

  for (const block of shellBlocks) {
    it(`runs the commands at README.md line ${block.line}: ${block.commands[0]!.split("\n")[0]!.slice(0, 60)}…`, async () => {
      const commands = block.commands.map(underNpmStart);
      const expectations = commands.map((c) => EXPECTATIONS.find((e) => e.pattern.test(c))!);
      assert.ok(expectations.every(Boolean), "every command has its expectation");
      for (const e of expectations) await e.before?.(ctx);
      const results = await runBlock(commands, env, expectations.map((e) => e.stdin ?? "").join(""));
      for (const [i, result] of results.entries()) {
        assert.equal(result.rc, 0, `${result.command} exited ${result.rc}: ${result.out}`);
        await expectations[i]!.check(result, ctx);
      }
    });
  }
});
