import { ConfigError, errorMessage } from "../core/errors";
import { DatabaseProvider, configNode } from "../core/node/config";
import { Lifecycle } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { OAuthConnection, OAuthConnectionSettings } from "../core/node/oauth-connection";
import { registerConnectionTest, withTokenStore } from "../core/node/connection-test";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";
import { teamleaderOAuthProfile } from "../teamleader/auth";
import { TeamleaderConnection, TeamleaderConnectionProvider } from "../teamleader/connection";
import { checkTeamleader, syncedResources } from "../teamleader/connection-check";

interface TeamleaderConnectionDef {
  name?: string;
  redirectUri: string;
  authHost?: string;
  apiHost?: string;
  database: string;
  requestsPerMinute?: string;
}

interface Credentials {
  clientId?: string;
  clientSecret?: string;
  refreshToken?: string;
}

function oauthSettings(config: TeamleaderConnectionDef, creds: Credentials, label: string): OAuthConnectionSettings {
  return {
    profile: teamleaderOAuthProfile(config.authHost),
    clientId: creds.clientId ?? "",
    clientSecret: creds.clientSecret ?? "",
    refreshToken: creds.refreshToken,
    store: "postgres",
    database: config.database,
    key: `teamleader:${creds.clientId ?? ""}`,
    label,
  };
}

type TeamleaderConnectionNode = Node<Credentials> & TeamleaderConnectionProvider & { connection: TeamleaderConnection };

const routesOn = new WeakSet<object>();

export = function register(RED: NodeAPI) {
  function TeamleaderConnectionConfig(this: TeamleaderConnectionNode, def: TeamleaderConnectionDef & NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    const creds = node.credentials ?? {};
    const label = `teamleader-connection node '${config.name || node.id}'`;
    // Tokens always in the database under the integration's key: every instance of this
    // integration on that database shares one single-use refresh-token chain.
    // Closes after the syncs using it, so a batch under way is written before the database goes.
    const life = new Lifecycle(node as unknown as Node);
    const oauth = new OAuthConnection(RED, oauthSettings(config, creds, label), life);
    node.connection = new TeamleaderConnection({
      oauth,
      database: async () => life.uses(configNode<DatabaseProvider>(RED, config.database, "postgres-database", "database")).database(),
      redirectUri: config.redirectUri,
      apiHost: config.apiHost,
      requestsPerMinute: config.requestsPerMinute === undefined || config.requestsPerMinute === "" ? 200 : Number(config.requestsPerMinute),
      log: (line) => node.debug(line),
    });
    life.onClose(() => Promise.allSettled([node.connection.close(), oauth.close()]).then(() => undefined));
  }

  RED.nodes.registerType("teamleader-connection", TeamleaderConnectionConfig, {
    credentials: { clientId: { type: "text" }, clientSecret: { type: "password" }, refreshToken: { type: "password" } },
  });

  registerConnectionTest(RED, {
    type: "teamleader-connection",
    destination: ["authHost", "apiHost", "store", "database"],
    secrets: ["clientSecret", "refreshToken"],
    run: (input, checks) => {
      const config = input.config as TeamleaderConnectionDef & NodeDef;
      const users: unknown[] = [];
      RED.nodes.eachNode((n) => n.type === "teamleader-query" && n.mode === "sync" && n.connection === input.id && users.push(n.resources));
      const settings = oauthSettings(config, input.credentials, `teamleader-connection node '${config.name || input.id}'`);
      return withTokenStore(input, settings, checks, ["token through the shared chain", "users.me", "scopes"], (tokens) =>
        checkTeamleader({ tokens, apiHost: config.apiHost, resources: syncedResources(users) }, checks),
      );
    },
  });

  // The dialog's Authorize link: a new state for a deployed connection, and Teamleader's URL with it.
  if (routesOn.has(RED.httpAdmin)) return;
  routesOn.add(RED.httpAdmin);
  RED.httpAdmin.post("/gluework/teamleader-connection/:id/authorize", RED.auth.needsPermission("teamleader-connection.write"), (req: any, res: any) => {
    const node = RED.nodes.getNode(String(req.params.id)) as TeamleaderConnectionNode | null;
    if (!node || node.type !== "teamleader-connection") {
      res.status(404).json({ error: "this teamleader-connection node is not deployed yet: deploy it, then authorize" });
      return;
    }
    const startedAt = Date.now();
    node.connection.startAuthorization().then(
      (authorizeUrl) => res.json({ authorizeUrl, startedAt }),
      (err: unknown) => res.status(err instanceof ConfigError ? 400 : 500).json({ error: errorMessage(err) }),
    );
  });
  // What the dialog shows after Authorize: the connection's state and when an authorization last completed.
  RED.httpAdmin.get("/gluework/teamleader-connection/:id/authorization", RED.auth.needsPermission("teamleader-connection.read"), (req: any, res: any) => {
    const node = RED.nodes.getNode(String(req.params.id)) as TeamleaderConnectionNode | null;
    if (!node || node.type !== "teamleader-connection") {
      res.status(404).json({ error: "this teamleader-connection node is not deployed yet" });
      return;
    }
    res.json({ state: node.connection.oauth.state.state, authorizedAt: node.connection.authorizedAt ?? null });
  });
};
