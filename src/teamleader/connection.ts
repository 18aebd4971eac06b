import { ConfigError } from "../core/errors";
import { Database } from "../core/db/database";
import { OAuthConnection } from "../core/node/oauth-connection";
import { TeamleaderApi, integrationLimiter } from "./api";
import { AuthorizationStates, CallbackAnswer, answerCallback } from "./authorization";
import { SyncSettings, TeamleaderSync } from "./sync";
import { DEFAULT_TABLE_PREFIX, SyncTables } from "./tables";

/** What a teamleader-connection config node offers the nodes that use it. */
export interface TeamleaderConnectionProvider {
  readonly type: "teamleader-connection";
  readonly connection: TeamleaderConnection;
}

export interface TeamleaderConnectionOptions {
  /** Tokens, in the PostgreSQL token store under the integration's key. */
  oauth: OAuthConnection;
  /** The database that keeps the tokens, the pending authorizations and the synced tables. */
  database(): Promise<Database>;
  /** The redirect URI registered on the integration: where the teamleader-oauth node listens. */
  redirectUri: string;
  /** Empty for production (api.focus.teamleader.eu). */
  apiHost?: string;
  /** Teamleader's limit per integration; 0 leaves pacing to the server's 429s alone. */
  requestsPerMinute?: number;
  log?: (line: string) => void;
}

/**
 * One Teamleader integration as the nodes use it: the API (sharing the integration's limiter),
 * the authorization links and their callback, and syncs into the connection's database.
 */
export class TeamleaderConnection {
  readonly api: TeamleaderApi;
  private states?: AuthorizationStates;
  private readonly syncs = new Map<string, Promise<TeamleaderSync>>();
  /** When this process last completed an authorization (ms since the epoch), for the dialog. */
  authorizedAt?: number;

  constructor(private readonly options: TeamleaderConnectionOptions) {
    const rpm = options.requestsPerMinute ?? 200;
    this.api = new TeamleaderApi({
      apiHost: options.apiHost,
      auth: options.oauth,
      limiter: rpm > 0 ? integrationLimiter(options.oauth.settings.key, rpm, options.database, options.log) : undefined,
      log: options.log,
    });
  }

  get key(): string {
    return this.options.oauth.settings.key;
  }

  /** The OAuth side, whose `state` events tell when a person must authorize. */
  get oauth(): OAuthConnection {
    return this.options.oauth;
  }

  get label(): string {
    return this.options.oauth.settings.label;
  }

  database(): Promise<Database> {
    return this.options.database();
  }

  /** A new authorization: Teamleader's authorize URL with a fresh state bound to this connection. */
  async startAuthorization(): Promise<string> {
    const redirectUri = this.redirectUri();
    const state = await (await this.authorizationStates()).create(this.key, redirectUri);
    return this.options.oauth.grant().authorizeUrl(state, redirectUri);
  }

  /** Answers the callback of an authorization: checks the state, exchanges the code, stores the tokens. */
  async acceptCallback(query: Record<string, unknown>): Promise<CallbackAnswer> {
    const oauth = this.options.oauth;
    return answerCallback(query, {
      states: await this.authorizationStates(),
      connectionKey: this.key,
      label: this.label,
      exchange: async (code, redirectUri) => {
        const tokens = await oauth.grant().exchangeCode(code, redirectUri);
        await (await oauth.tokens()).authorize(tokens);
        this.authorizedAt = Date.now();
      },
    });
  }

  /** A sync into this connection's database, into tables named `<prefix><resource>`. */
  sync(prefix = DEFAULT_TABLE_PREFIX, settings?: SyncSettings): Promise<TeamleaderSync> {
    const key = `${prefix}|${JSON.stringify(settings ?? {})}`;
    let sync = this.syncs.get(key);
    if (!sync) {
      sync = this.database().then((db) => new TeamleaderSync(this.api, new SyncTables(db, prefix), settings));
      sync.catch(() => this.syncs.delete(key));
      this.syncs.set(key, sync);
    }
    return sync;
  }

  async close(): Promise<void> {
    await this.api.close();
  }

  private redirectUri(): string {
    const uri = this.options.redirectUri?.trim();
    if (!uri || !/^https?:\/\//i.test(uri)) {
      throw new ConfigError(`the ${this.label} needs a redirect URI (the address of its teamleader-oauth callback, as registered on the integration)`);
    }
    return uri;
  }

  private async authorizationStates(): Promise<AuthorizationStates> {
    this.states ??= new AuthorizationStates(await this.database());
    return this.states;
  }
}
