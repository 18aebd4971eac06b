import { JwtAlgorithm, signingKeys } from "../auth/keys";
import { JwtKeyProvider, TokenAuthority } from "../auth/jwt";
import { checkJwtKey } from "../auth/connection-check";
import { registerConnectionTest } from "../core/node/connection-test";
import { FileThrottleStore, LoginThrottle, PostgresThrottleStore, ThrottleStore } from "../auth/throttle";
import { SEALED, UserList, hashPassword } from "../auth/users";
import { TokenCipher } from "../core/tokens/cipher";
import { ConfigError, PipelineError, asPipelineError } from "../core/errors";
import { DatabaseProvider, configNode, runtimeSecret, stateDir } from "../core/node/config";
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
  // The dialog never sees a stored hash (only that of a password just typed in it): it gets each
  // user's hash sealed with a key only the runtime has (from Node-RED's credential secret, or a key
  // file in the user directory, so it outlives a restart), and gives it back for users whose
  // password did not change.
  let sealing: TokenCipher | undefined;
  const sealer = () => (sealing ??= TokenCipher.fromSecret(runtimeSecret(RED), "jwt-auth-key users"));
  const unseal = (sealed: string, name: string): string | undefined => {
    try {
      return sealer().open(sealed, name);
    } catch {
      return undefined;
    }
  };
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
        users: new UserList(creds.users, unseal),
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
    try {
      const creds = (RED.nodes as any).getCredentials?.(String(req.params.id)) as KeyCredentials | undefined;
      const list = new UserList(creds?.users, unseal);
      // Names, and each hash sealed: the dialog keeps it for a user whose password is unchanged.
      res.json({ users: list.names.map((name) => ({ name, kept: SEALED + sealer().seal(list.hashOf(name)!, name) })) });
    } catch (err) {
      res.status(err instanceof ConfigError ? 400 : 500).json({ error: err instanceof ConfigError ? err.message : "could not read the users" });
    }
  });
};
