import { JwtAlgorithm, signingKeys } from "../auth/keys";
import { JwtKeyProvider, TokenAuthority } from "../auth/jwt";
import { FileThrottleStore, LoginThrottle, PostgresThrottleStore, ThrottleStore } from "../auth/throttle";
import { UserList, hashPassword } from "../auth/users";
import { ConfigError, PipelineError, asPipelineError } from "../core/errors";
import { DatabaseProvider, configNode, stateDir } from "../core/node/config";
import { migrateConfig } from "../core/node/migrate";
import { registerSecret } from "../core/redact";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";

interface KeyDef extends NodeDef {
  algorithm: JwtAlgorithm;
  issuer: string;
  audience: string;
  clockTolerance: string;
  publicKey: string;
  /** A postgres-database node: failed logins are counted there; in a file of the user directory otherwise. */
  database?: string;
}

interface KeyCredentials {
  secret?: string;
  privateKey?: string;
  users?: string;
}

export = function register(RED: NodeAPI) {
  // One file store per file, shared by every key node of this runtime (the lock file covers others).
  const fileStores = new Map<string, FileThrottleStore>();
  function throttleStore(database: string | undefined): ThrottleStore {
    if (database) {
      // Looked up on each use: a redeploy replaces the database node.
      return new PostgresThrottleStore(() => configNode<DatabaseProvider>(RED, database, "postgres-database", "login throttle database").database());
    }
    const file = stateDir(RED, "login-throttle.json");
    let store = fileStores.get(file);
    if (!store) fileStores.set(file, (store = new FileThrottleStore(file)));
    return store;
  }

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
        throttle: new LoginThrottle({}, undefined, throttleStore(config.database || undefined)),
      });
      // Only once accepted: a weak "secret" registered for redaction would mask that word everywhere.
      registerSecret(creds.secret);
      registerSecret(creds.privateKey);
    } catch (err) {
      authority = asPipelineError(err);
      node.error(`jwt-auth key "${config.name || node.id}": ${authority.message}`);
    }
    node.authority = () => {
      if (authority instanceof PipelineError) throw authority;
      return authority;
    };
  }

  RED.nodes.registerType("jwt-auth-key", JwtAuthKeyNode, {
    credentials: { secret: { type: "password" }, privateKey: { type: "password" }, users: { type: "password" } },
  });

  // The dialog hashes each new password here (bcrypt in the runtime, never in the flow file), and
  // reads the deployed users back to edit the list: the credential itself is never sent to it.
  const permission = RED.auth.needsPermission("jwt-auth-key.write");
  RED.httpAdmin.post("/gluework/jwt-auth-key/hash", permission, (req: any, res: any) => {
    const password = req.body?.password;
    if (typeof password !== "string" || password.length < 8 || password.length > 1024) {
      res.status(400).json({ error: "a password of 8 to 1024 characters is needed" });
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
