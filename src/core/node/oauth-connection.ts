import { EventEmitter } from "node:events";
import { ConfigError, PipelineError, errorMessage } from "../errors";
import { HttpClient, TokenSource } from "../http/client";
import { TokenCipher } from "../tokens/cipher";
import { FileTokenStore } from "../tokens/file-store";
import { OAuthGrant, OAuthProfile } from "../tokens/oauth-grant";
import { PostgresTokenStore } from "../tokens/pg-store";
import { TokenManager, TokenStateEvent } from "../tokens/token-manager";
import { TokenStore } from "../tokens/types";
import { DatabaseProvider, configNode, stateDir, runtimeSecret } from "./config";
import type { Lifecycle } from "./lifecycle";
import type { NodeAPI } from "./types";
import type { RunCounts } from "../run-counts";

export interface OAuthConnectionSettings {
  profile: OAuthProfile;
  clientId: string;
  clientSecret: string;
  /** The refresh token in the node's credentials: it seeds the store when it is a new one. */
  refreshToken?: string;
  /** Where tokens live: an encrypted file in the user directory, or a postgres-database node. */
  store: "file" | "postgres";
  /** The postgres-database config node, when `store` is "postgres". */
  database?: string;
  /**
   * The connection's key in the store. Node-RED instances that share a database and this key share
   * one token chain, so it names the integration (provider and client id), not the node.
   */
  key: string;
  /** The config node as a user finds it, for messages: "goto-credentials node 'Main'". */
  label: string;
  /** Aborts every request to the token endpoint (a connection test's deadline). */
  signal?: AbortSignal;
}

export type ConnectionState = "connecting" | "authorized" | "needs-authorization" | "error";

export interface ConnectionStateEvent {
  state: ConnectionState;
  reason?: string;
  /** For "error": the short status of the failure ("missing client id"), when it has one. */
  status?: string;
}

/**
 * The OAuth side of a config node: its token store, the grant against the provider and the token
 * manager, opened once (the store may need the database) and closed with the node. It is a
 * TokenSource, so an HttpClient can take it as its `auth`, and it tells its listeners when the
 * connection becomes authorized or needs authorization (`state` events), so flow nodes show it.
 */
export class OAuthConnection extends EventEmitter implements TokenSource {
  private readonly ready: Promise<TokenManager>;
  private readonly tokenHttp: HttpClient;
  private store?: TokenStore;
  private current: ConnectionStateEvent = { state: "connecting" };

  constructor(
    private readonly RED: NodeAPI,
    readonly settings: OAuthConnectionSettings,
    /** The owning config node's lifecycle: the token database stays open until it has closed. */
    private readonly life?: Pick<Lifecycle, "uses">,
  ) {
    super();
    this.tokenHttp = new HttpClient({ name: settings.profile.name, baseUrl: settings.profile.tokenUrl, timeoutMs: 20_000, signal: settings.signal });
    this.ready = this.open();
    // Failures reach callers through getAccessToken(); this only keeps the state current.
    this.ready.catch((err) => this.setState({ state: "error", reason: errorMessage(err), status: err instanceof PipelineError ? err.status : undefined }));
  }

  get state(): ConnectionStateEvent {
    return this.current;
  }

  async getAccessToken(counts?: RunCounts): Promise<string> {
    return (await this.ready).getAccessToken(counts);
  }

  async invalidate(rejected: string, counts?: RunCounts): Promise<string> {
    return (await this.ready).invalidate(rejected, counts);
  }

  /** The token manager itself, for extras (an account key) and authorization-code results. */
  tokens(): Promise<TokenManager> {
    return this.ready;
  }

  /** The grant against the provider, for a callback node that exchanges codes. */
  grant(): OAuthGrant {
    return new OAuthGrant(this.settings.profile, { clientId: this.settings.clientId, clientSecret: this.settings.clientSecret }, this.tokenHttp);
  }

  async close(): Promise<void> {
    this.removeAllListeners();
    await this.ready.catch(() => undefined);
    await this.store?.close();
    await this.tokenHttp.close();
  }

  private async open(): Promise<TokenManager> {
    const { settings } = this;
    if (!settings.clientId) throw new ConfigError(`the ${settings.label} has no client id`, { status: "missing client id" });
    if (!settings.clientSecret) throw new ConfigError(`the ${settings.label} has no client secret`, { status: "missing client secret" });
    this.store = await this.openStore();
    const manager = new TokenManager({ key: settings.key, store: this.store, grant: this.grant(), label: settings.label });
    manager.on("state", (e: TokenStateEvent) => this.setState(e));
    if (settings.refreshToken) await manager.seed(settings.refreshToken);
    const stored = await manager.state();
    if (!stored) this.setState({ state: "needs-authorization", reason: `no refresh token yet: paste one or use Authorize in the ${settings.label}` });
    return manager;
  }

  private openStore(): Promise<TokenStore> {
    return openTokenStore(this.RED, this.settings, this.life);
  }

  private setState(event: TokenStateEvent | ConnectionStateEvent): void {
    if (event.state === this.current.state && event.reason === this.current.reason) return;
    this.current = { state: event.state, reason: event.reason, status: (event as ConnectionStateEvent).status };
    this.emit("state", this.current);
  }
}

/** The token store `settings` name: the encrypted file store, or PostgreSQL through a postgres-database node. */
export async function openTokenStore(RED: NodeAPI, settings: Pick<OAuthConnectionSettings, "store" | "database" | "clientSecret" | "key">, life?: Pick<Lifecycle, "uses">): Promise<TokenStore> {
  if (settings.store === "postgres") {
    const provider = configNode<DatabaseProvider>(RED, settings.database, "postgres-database", "token database");
    const db = await (life?.uses(provider) ?? provider).database();
    return new PostgresTokenStore(db, TokenCipher.fromSecret(settings.clientSecret, `postgres:${settings.key}`));
  }
  return new FileTokenStore(stateDir(RED, "tokens"), TokenCipher.fromSecret(runtimeSecret(RED), "file"));
}

/**
 * Shows a connection's state in a flow node's status: red "needs authorization" when a person has
 * to act, and back to idle once the connection is authorized again.
 */
export function showConnectionState(
  connection: OAuthConnection,
  status: { needsAuthorization(): void; error(text: string): void; clear(): void },
  life: { listen(emitter: EventEmitter, event: string, listener: (...args: any[]) => void): void },
): void {
  const show = (e: ConnectionStateEvent) => {
    if (e.state === "needs-authorization") status.needsAuthorization();
    else if (e.state === "error") status.error(e.status && e.status !== "error" ? e.status : "connection error");
    else if (e.state === "authorized") status.clear();
  };
  show(connection.state);
  life.listen(connection, "state", show);
}
