import { ChildProcess, spawn } from "node:child_process";
import net from "node:net";
import path from "node:path";

/** Azurite's well-known development account (public, documented by Microsoft). */
export const AZURITE_ACCOUNT = {
  name: "devstoreaccount1",
  key: "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==",
};

export interface AzuriteOptions {
  /** A process group of its own, so a terminal's Ctrl-C reaches only whoever stops it in order. */
  detached?: boolean;
  port?: number;
  host?: string;
  /** Keep blobs in this folder; in memory when absent. */
  location?: string;
}

/**
 * Azurite's blob service as a child process: the local stand-in for Azure Blob Storage in the
 * demo and the tests. Azurite 3.35 runs on Node 20; it needs --skipApiVersionCheck because the
 * current @azure/storage-blob sends a newer service version than it knows.
 */
export class Azurite {
  private child?: ChildProcess;
  port = 0;
  readonly host: string;

  constructor(private readonly options: AzuriteOptions = {}) {
    this.host = options.host ?? "127.0.0.1";
  }

  get blobUrl(): string {
    return `http://${this.host}:${this.port}/${AZURITE_ACCOUNT.name}`;
  }

  get connectionString(): string {
    return `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT.name};AccountKey=${AZURITE_ACCOUNT.key};BlobEndpoint=${this.blobUrl};`;
  }

  async start(): Promise<void> {
    this.port = this.options.port || (await freePort(this.host));
    const main = path.join(path.dirname(require.resolve("azurite/package.json")), "dist", "src", "blob", "main.js");
    const args = [main, "--blobHost", this.host, "--blobPort", String(this.port), "--skipApiVersionCheck", "--disableTelemetry", "--silent", "--loose"];
    if (this.options.location) args.push("--location", this.options.location);
    else args.push("--inMemoryPersistence");
    const child = spawn(process.execPath, args, { stdio: ["ignore", "ignore", "pipe"], detached: this.options.detached ?? false });
    this.child = child;
    let stderr = "";
    child.stderr?.on("data", (c: Buffer) => (stderr = (stderr + c.toString()).slice(-2000)));
    const exited = new Promise<never>((_, reject) =>
      child.once("exit", (code) => reject(new Error(`Azurite exited (${code}) before it listened: ${stderr.trim()}`))),
    );
    await Promise.race([waitForPort(this.host, this.port, 30_000), exited]);
    child.removeAllListeners("exit");
  }

  /** Stops Azurite at once, as a crash or a network cut would (the tests of half-written uploads). */
  kill(): void {
    this.child?.kill("SIGKILL");
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => child.kill("SIGKILL"), 5000);
      child.once("exit", () => {
        clearTimeout(force);
        resolve();
      });
      child.kill("SIGTERM");
    });
  }
}

export function freePort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export async function waitForPort(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const open = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, host);
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`nothing listened on ${host}:${port} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
