import http from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { nodeRedPath } from "./node-red";

/** A core node module of the runtime under test (e.g. "network/21-httpin.js"). */
export function coreNode(file: string): unknown {
  return require(require.resolve(`@node-red/nodes/core/${file}`, { paths: [path.dirname(nodeRedPath())] }));
}

/**
 * The `http in` routes of the flows the test helper loads, served on a port of their own: the
 * helper makes a new RED.httpNode app per load and serves only the admin app.
 */
export class HttpNodeServer {
  private app?: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  private server?: http.Server;
  url = "";

  /** Pass to `helper.load([...nodes, server.capture], …)`: it keeps each load's node app. */
  readonly capture = (RED: { httpNode: unknown }) => {
    this.app = RED.httpNode as (req: http.IncomingMessage, res: http.ServerResponse) => void;
  };

  async listen(): Promise<string> {
    this.server = http.createServer((req, res) => {
      if (this.app) this.app(req, res);
      else res.writeHead(503).end();
    });
    await new Promise<void>((resolve) => this.server!.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    server?.closeAllConnections();
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
