import { ConfigError } from "../core/errors";
import { registerAuthorizeRoutes } from "../core/node/authorize-routes";
import { registerConnectionTest, withTokenStore } from "../core/node/connection-test";
import { DatabaseProvider, configNode } from "../core/node/config";
import { Lifecycle } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { OAuthConnection, OAuthConnectionSettings } from "../core/node/oauth-connection";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";
import { GOTO_REQUESTS_PER_SECOND, GoToApis, GoToConnection } from "../goto/api";
import { gotoOAuthProfile } from "../goto/auth";
import { checkGoTo } from "../goto/connection-check";

interface GoToCredentialsDef extends NodeDef {
  authHost?: string;
  redirectUri?: string;
  apiHost?: string;
  accountKey?: string;
  store?: "file" | "postgres";
  database?: string;
  requestsPerSecond?: string | number;
}

type Credentials = { clientId?: string; clientSecret?: string; refreshToken?: string };

function oauthSettings(config: GoToCredentialsDef, creds: Credentials): OAuthConnectionSettings {
  const clientId = (creds.clientId ?? "").trim();
  return {
    profile: gotoOAuthProfile(config.authHost?.trim() || undefined),
    clientId,
    clientSecret: creds.clientSecret ?? "",
    refreshToken: creds.refreshToken?.trim() || undefined,
    store: config.store === "postgres" ? "postgres" : "file",
    database: config.database,
    key: `goto:${clientId}`,
    label: `goto-credentials node '${config.name || config.id}'`,
  };
}

export = function register(RED: NodeAPI) {
  function GoToCredentialsNode(this: Node<Credentials> & GoToConnection & { connection: OAuthConnection }, def: GoToCredentialsDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    const creds = node.credentials ?? {};
    const accountKey = String(config.accountKey ?? "").trim() || undefined;
    const rps = Number(config.requestsPerSecond || GOTO_REQUESTS_PER_SECOND);

    const settings = oauthSettings(config, creds);
    // Closes after the nodes using it, so a request under way keeps its tokens and rate budget.
    const life = new Lifecycle(node);
    node.connection = new OAuthConnection(RED, settings, life);
    let apis: GoToApis | undefined;
    // Replicas share what must happen once through the database that holds their tokens.
    const shared = config.store === "postgres" && !!config.database;
    const open = () =>
      (apis ??= new GoToApis({
        auth: node.connection,
        apiHost: config.apiHost?.trim() || undefined,
        requestsPerSecond: rps,
        accountKey,
        keep: {
          get: async () => (await node.connection.tokens()).extra("accountKey"),
          set: async (value) => (await node.connection.tokens()).setExtra("accountKey", value),
        },
        log: (line) => node.debug(line),
        budget: { clientId: settings.clientId, database: shared ? () => life.uses(configNode<DatabaseProvider>(RED, config.database!, "postgres-database", "database")).database() : undefined },
      }));
    Object.assign(node, {
      authorizeHost: config.authHost?.trim() || undefined,
      authorizeRedirectUri: config.redirectUri?.trim() || undefined,
      configuredAccountKey: accountKey,
      api: (family: Parameters<GoToApis["api"]>[0]) => open().api(family),
      accountKey: () => open().accountKey(),
      sharedDatabase: () => (shared ? configNode<DatabaseProvider>(RED, config.database!, "postgres-database", "database").database() : undefined),
    });
    if (!(rps > 0)) node.warn(new ConfigError("the request rate must be above 0; GoTo documents 10 per second").message);

    life.onClose(() => Promise.allSettled([apis?.close(), node.connection.close()]).then(() => undefined));
  }

  RED.nodes.registerType("goto-credentials", GoToCredentialsNode, {
    credentials: { clientId: { type: "text" }, clientSecret: { type: "password" }, refreshToken: { type: "password" } },
  });
  registerAuthorizeRoutes(RED, { type: "goto-credentials", profile: gotoOAuthProfile });
  registerConnectionTest(RED, {
    type: "goto-credentials",
    destination: ["authHost", "apiHost", "store", "database"],
    secrets: ["clientSecret", "refreshToken"],
    run: (input, checks) => {
      const config = input.config as GoToCredentialsDef;
      return withTokenStore(input, oauthSettings(config, input.credentials), checks, ["token from the refresh token", "scopes", "account key and admin rights"], (tokens) =>
        checkGoTo({ tokens, apiHost: config.apiHost?.trim() || undefined, accountKey: String(config.accountKey ?? "").trim() || undefined }, checks),
      );
    },
  });
};
