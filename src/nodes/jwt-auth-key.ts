import { JwtAlgorithm, signingKeys } from "../auth/keys";
import { JwtKeyProvider, TokenAuthority } from "../auth/jwt";
import { checkJwtKey } from "../auth/connection-check";
import { registerConnectionTest } from "../core/node/connection-test";
import { UserList, hashPassword } from "../auth/users";
import { ConfigError, PipelineError, asPipelineError } from "../core/errors";
import { migrateConfig } from "../core/node/migrate";
import { registerSecret } from "../core/redact";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";

interface KeyDef extends NodeDef {
  algorithm: JwtAlgorithm;
  issuer: string;
  audience: string;
  clockTolerance: string;
  publicKey: string;
}

interface KeyCredentials {
  secret?: string;
  privateKey?: string;
  users?: string;
}

export = function register(RED: NodeAPI) {
  function JwtAuthKeyNode(this: Node<KeyCredentials> & JwtKeyProvider, def: KeyDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    const creds = node.credentials ?? {};
    let authority: TokenAuthority | PipelineError;
    try {
      authority = new TokenAuthority({
        keys: signingKeys(config.algorithm || "HS256", { secret: creds.secret, privateKey: creds.privateKey, publicKey: config.publicKey }),
        users: new UserList(creds.users),
        issuer: config.issuer || "node-red",
        audience: config.audience || "api",
        clockToleranceS: config.clockTolerance === "" || config.clockTolerance === undefined ? 30 : Number(config.clockTolerance),
      });
      // Only once accepted: a weak "secret" registered for redaction would mask that word everywhere.
      registerSecret(creds.secret);
      registerSecret(creds.privateKey);
    } catch (err) {
      authority = asPipelineError(err);
      // An empty key (an example just imported) is shown on the nodes that use it; a wrong one is logged too.
      if (!authority.status.startsWith("missing ")) node.error(`jwt-auth key "${config.name || node.id}": ${authority.message}`);
    }
    node.authority = () => {
      if (authority instanceof PipelineError) throw authority;
      return authority;
    };
  }

  RED.nodes.registerType("jwt-auth-key", JwtAuthKeyNode, {
    credentials: { secret: { type: "password" }, privateKey: { type: "password" }, users: { type: "password" } },
  });

  registerConnectionTest(RED, {
    type: "jwt-auth-key",
    destination: [],
    secrets: ["secret", "privateKey"],
    run: (input, checks) => {
      const config = input.config as Partial<KeyDef>;
      return checkJwtKey({ algorithm: config.algorithm || "HS256", secret: input.credentials.secret, privateKey: input.credentials.privateKey, publicKey: config.publicKey }, checks);
    },
  });

  // The dialog hashes each new password here (bcrypt in the runtime, never in the flow file), and
  // reads the deployed users back to edit the list: the credential itself is never sent to it.
  const permission = RED.auth.needsPermission("jwt-auth-key.write");
  RED.httpAdmin.post("/gluework/jwt-auth-key/hash", permission, (req: any, res: any) => {
    const password = req.body?.password;
    if (typeof password !== "string" || password.length < 8) {
      res.status(400).json({ error: "a password of at least 8 characters is needed" });
      return;
    }
    hashPassword(password).then(
      (hash) => res.json({ hash }),
      () => res.status(500).json({ error: "could not hash the password" }),
    );
  });
  RED.httpAdmin.get("/gluework/jwt-auth-key/:id/users", permission, (req: any, res: any) => {
    const creds = (RED.nodes as any).getCredentials?.(String(req.params.id)) as KeyCredentials | undefined;
    try {
      const list = new UserList(creds?.users);
      const users = (creds?.users ?? "")
        .split(/\r?\n/)
        .map((l) => l.trim())
        .filter((l) => l && !l.startsWith("#"))
        .map((l) => ({ name: l.slice(0, l.indexOf(":")), hash: l.slice(l.indexOf(":") + 1) }))
        .filter((u) => list.has(u.name));
      res.json({ users });
    } catch (err) {
      res.status(err instanceof ConfigError ? 400 : 500).json({ error: (err as Error).message });
    }
  });
};
