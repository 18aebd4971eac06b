import { configNode } from "../core/node/config";
import { handleInput } from "../core/node/input";
import { Lifecycle } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { StatusReporter, showSetupProblem } from "../core/node/status";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";
import { callbackPage } from "../teamleader/authorization";
import type { TeamleaderConnectionProvider } from "../teamleader/connection";

interface TeamleaderOAuthDef {
  connection: string;
}

const PAGE_HEADERS = { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" };

export = function register(RED: NodeAPI) {
  function TeamleaderOAuthNode(this: Node, def: TeamleaderOAuthDef & NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    const status = new StatusReporter(node);
    const life = new Lifecycle(node);
    life.onClose(() => status.clear());
    showSetupProblem(status, () => configNode<TeamleaderConnectionProvider>(RED, config.connection, "teamleader-connection", "Teamleader connection").connection.oauth.tokens());

    handleInput(node, status, async (msg, send) => {
      const { connection } = configNode<TeamleaderConnectionProvider>(RED, config.connection, "teamleader-connection", "Teamleader connection");
      // From an `http in` node the parameters are in msg.req.query; msg.payload works too.
      const query = ((msg.req as { query?: Record<string, unknown> } | undefined)?.query ?? (typeof msg.payload === "object" && msg.payload ? msg.payload : {})) as Record<string, unknown>;
      status.busy("checking");
      let answer;
      try {
        answer = await connection.acceptCallback(query);
      } catch (err) {
        // The browser still gets an answer; the Catch node gets the failure.
        send([null, { ...msg, statusCode: 500, headers: PAGE_HEADERS, payload: callbackPage({ accepted: false, statusCode: 500, message: "code rejected: the authorization could not be completed here; see the Node-RED log." }) }]);
        throw err;
      }
      msg.statusCode = answer.statusCode;
      msg.headers = PAGE_HEADERS;
      msg.payload = callbackPage(answer);
      if (answer.accepted) {
        status.ok("authorized");
        send([msg, null]);
      } else {
        status.warn(`refused (${answer.statusCode})`);
        send([null, msg]);
      }
      if (answer.error) throw answer.error;
    });
  }

  RED.nodes.registerType("teamleader-oauth", TeamleaderOAuthNode);
};
