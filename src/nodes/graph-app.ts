import { ConfigError } from "../core/errors";
import { migrateConfig } from "../core/node/migrate";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";
import { EntraAppTokenSource } from "../graph/app-token";
import type { GraphApp } from "../graph/app";
import { budgetLimiter } from "../core/http/shared-limiter";
import { GRAPH_RATE_LIMIT, GraphClient } from "../graph/client";
import { checkGraphApp } from "../graph/connection-check";
import { registerConnectionTest } from "../core/node/connection-test";
import { usersClosed } from "../core/node/lifecycle";

interface GraphAppDef extends NodeDef {
  tenantId: string;
  clientId: string;
  authType: "secret" | "certificate";
  authorityHost: string;
  graphUrl: string;
}

interface Credentials {
  clientSecret?: string;
  certificate?: string;
  privateKey?: string;
}

export = function register(RED: NodeAPI) {
  function GraphAppNode(this: Node<Credentials> & GraphApp, def: GraphAppDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    let client: GraphClient | undefined;
    Object.assign(node, { budgetKey: `graph:${config.tenantId}:${config.clientId}` });

    node.graph = () => {
      if (client) return client;
      const creds = node.credentials ?? {};
      const certificate = config.authType === "certificate";
      const label = `the graph-app node '${config.name || config.id}'`;
      if (!config.tenantId) throw new ConfigError(`${label} has no tenant id`, { status: "missing tenant id" });
      if (!config.clientId) throw new ConfigError(`${label} has no client id`, { status: "missing client id" });
      if (certificate ? !(creds.certificate && creds.privateKey) : !creds.clientSecret) {
        throw new ConfigError(`${label} needs ${certificate ? "a certificate and its private key" : "a client secret"}`, {
          status: certificate ? "missing certificate or key" : "missing client secret",
        });
      }
      const tokens = new EntraAppTokenSource({
        tenantId: config.tenantId,
        clientId: config.clientId,
        ...(certificate ? { certificate: creds.certificate, privateKey: creds.privateKey } : { clientSecret: creds.clientSecret }),
        authorityHost: config.authorityHost || undefined,
      });
      client = new GraphClient({
        baseUrl: config.graphUrl || undefined,
        auth: tokens,
        // Every graph-app node of one app and tenant in this process spends one budget.
        limiter: budgetLimiter(node.budgetKey, GRAPH_RATE_LIMIT),
      });
      return client;
    };

    node.on("close", (_removed: boolean, done: () => void) => {
      // A poll under way reads on with this client until its node has closed.
      void usersClosed(node).then(() => {
        const closing = client?.close();
        client = undefined;
        return Promise.resolve(closing).catch(() => undefined).finally(done);
      });
    });
  }

  RED.nodes.registerType("graph-app", GraphAppNode, {
    credentials: { clientSecret: { type: "password" }, certificate: { type: "password" }, privateKey: { type: "password" } },
  });
  registerConnectionTest(RED, {
    type: "graph-app",
    destination: ["authorityHost", "graphUrl", "tenantId"],
    secrets: ["clientSecret", "certificate", "privateKey"],
    run: (input, checks) => {
      const config = input.config as Partial<GraphAppDef>;
      const creds = input.credentials;
      const certificate = config.authType === "certificate";
      return checkGraphApp(
        {
          tenantId: String(config.tenantId ?? "").trim(),
          clientId: String(config.clientId ?? "").trim(),
          ...(certificate ? { certificate: creds.certificate, privateKey: creds.privateKey } : { clientSecret: creds.clientSecret }),
          authorityHost: config.authorityHost || undefined,
          graphUrl: config.graphUrl || undefined,
          testAddress: input.options.testAddress,
        },
        checks,
      );
    },
  });
};
