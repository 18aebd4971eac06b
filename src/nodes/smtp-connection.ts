import { ConfigError } from "../core/errors";
import { migrateConfig } from "../core/node/migrate";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";
import type { SmtpProvider, SmtpSettings } from "../mail/transport";
import { checkSmtp } from "../mail/connection-check";
import { registerConnectionTest } from "../core/node/connection-test";

interface SmtpDef extends NodeDef {
  host: string;
  port: string;
  security: SmtpSettings["security"];
  verifyCertificate: boolean;
  auth: SmtpSettings["auth"];
  sender: string;
  poolSize: string;
  tenantId: string;
  clientId: string;
  loginHost: string;
}

interface SmtpCredentials {
  user?: string;
  password?: string;
  clientSecret?: string;
}

function smtpSettings(config: SmtpDef, creds: SmtpCredentials): SmtpSettings {
  const port = Number(config.port);
  if (config.port && !(port > 0 && port < 65536)) throw new ConfigError(`SMTP port "${config.port}" is not a port number`);
  return {
    host: config.host,
    port,
    security: config.security || "starttls",
    verifyCertificate: config.verifyCertificate !== false,
    auth: config.auth || "password",
    user: creds.user,
    password: creds.password,
    oauth: config.auth === "oauth2" ? { tenantId: config.tenantId, clientId: config.clientId, clientSecret: creds.clientSecret ?? "", loginHost: config.loginHost || undefined } : undefined,
    sender: config.sender,
    poolSize: Number(config.poolSize) || 5,
  };
}

export = function register(RED: NodeAPI) {
  function SmtpConnectionNode(this: Node<SmtpCredentials> & SmtpProvider, def: SmtpDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    node.settings = () => smtpSettings(config, node.credentials ?? {});
  }

  RED.nodes.registerType("smtp-connection", SmtpConnectionNode, {
    credentials: { user: { type: "text" }, password: { type: "password" }, clientSecret: { type: "password" } },
  });
  registerConnectionTest(RED, {
    type: "smtp-connection",
    destination: ["host", "port", "security", "verifyCertificate", "loginHost", "tenantId"],
    secrets: ["password", "clientSecret"],
    run: (input, checks) => checkSmtp(smtpSettings(input.config as unknown as SmtpDef, input.credentials), checks),
  });
};
