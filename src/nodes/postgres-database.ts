import { Database } from "../core/db/database";
import { PostgresDatabaseDef, PostgresCredentials, databaseConfig } from "../core/db/config";
import { ConfigError } from "../core/errors";
import { checkDatabase } from "../core/db/connection-check";
import { registerConnectionTest } from "../core/node/connection-test";
import { registerMetricsRoute } from "../core/node/metrics-route";
import { stateDir } from "../core/node/config";
import { usersClosed } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { DEFAULT_KEEP_DAYS, runLog } from "../core/runs";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";

export = function register(RED: NodeAPI) {
  function PostgresDatabaseNode(this: Node<PostgresCredentials> & { type: "postgres-database"; database(): Promise<Database> }, def: PostgresDatabaseDef & NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    let opening: Promise<Database> | undefined;
    let closed = false;
    const keepRunsDays = Math.max(1, Math.floor(Number(config.keepRunsDays) || DEFAULT_KEEP_DAYS));

    node.database = () => {
      if (closed) return Promise.reject(new ConfigError("this postgres-database node was closed by a redeploy"));
      opening ??= Database.open(databaseConfig(config, node.credentials ?? {}, stateDir(RED, "postgres")), {
        warn: (m) => node.warn(m),
        debug: (m) => node.debug(m),
      }).then((db) => {
        runLog(db).keepDays = keepRunsDays;
        return db;
      }).catch((err) => {
        opening = undefined; // the next caller tries again
        throw err;
      });
      return opening;
    };

    node.on("close", (_removed: boolean, done: () => void) => {
      // The nodes using the pool finish or hand back their work first (they close at the same time).
      void usersClosed(node).then(() => {
        closed = true;
        const pending = opening;
        opening = undefined;
        if (!pending) return done();
        pending.then((db) => db.close()).catch(() => undefined).finally(done);
      });
    });
  }

  RED.nodes.registerType("postgres-database", PostgresDatabaseNode, {
    credentials: { user: { type: "text" }, password: { type: "password" }, url: { type: "password" } },
  });
  registerConnectionTest(RED, {
    type: "postgres-database",
    destination: ["mode", "host", "port", "database", "ssl"],
    secrets: ["password", "url"],
    run: (input, checks) => checkDatabase(databaseConfig(input.config as unknown as PostgresDatabaseDef, input.credentials, stateDir(RED, "postgres")), checks),
  });
  // One metrics route for the process: it reads every postgres-database node the flows use.
  registerMetricsRoute(RED);
};
