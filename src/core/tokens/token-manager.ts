import { EventEmitter } from "node:events";
import { Clock, systemClock } from "../clock";
import { AuthorizationRequiredError } from "../errors";
import { TokenSource } from "../http/client";
import { registerSecret } from "../redact";
import type { RunCounts } from "../run-counts";
import { fingerprint } from "./cipher";
import { GrantRefusedError } from "./oauth-grant";
import { StoredTokens, TokenResponse, TokenState, TokenStore, emptyTokens } from "./types";

export interface RefreshGrant {
  refresh(refreshToken: string): Promise<TokenResponse>;
}

export interface TokenManagerOptions {
  /** The connection's key in the store. */
  key: string;
  store: TokenStore;
  grant: RefreshGrant;
  /** Names the config node in messages: "goto-credentials node 'Main account'". */
  label: string;
  clock?: Clock;
}

export interface TokenStateEvent {
  state: TokenState;
  reason?: string;
}

/** How long before expiry to replace a token: a tenth of its life, at most five minutes. */
export function refreshLead(lifetimeMs: number): number {
  return Math.min(5 * 60_000, Math.floor(lifetimeMs / 10));
}

/**
 * One connection's access token. Callers share one refresh in flight (single-flight), the token is
 * replaced ahead of its expiry, a 401 forces one refresh, and every refresh runs inside the
 * store's lock after re-reading the stored record, so a token another process just refreshed is
 * used instead of spending the refresh token again. A refused refresh token moves the connection
 * to "needs authorization" and stops there: no retry loop against the provider.
 *
 * Events: `state` ({ state, reason }) when the connection changes between authorized and needs
 * authorization; `refreshed` ({ rotated }) after each refresh this process made.
 */
export class TokenManager extends EventEmitter implements TokenSource {
  private cached: StoredTokens | null = null;
  private inflight: Promise<StoredTokens> | null = null;
  private lastState: TokenState | null = null;
  private readonly clock: Clock;

  constructor(private readonly opts: TokenManagerOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
  }

  get key(): string {
    return this.opts.key;
  }

  async getAccessToken(counts?: RunCounts): Promise<string> {
    const cached = this.cached;
    if (cached?.accessToken && cached.refreshAt !== null && this.clock.now() < cached.refreshAt) return cached.accessToken;
    return (await this.refreshShared(undefined, counts)).accessToken!;
  }

  async invalidate(rejected: string, counts?: RunCounts): Promise<string> {
    if (this.cached?.accessToken === rejected) this.cached = { ...this.cached, refreshAt: 0 };
    let record = await this.refreshShared(rejected, counts);
    // A refresh already in flight may have found the rejected token still fresh in the store.
    if (record.accessToken === rejected) record = await this.refreshShared(rejected, counts);
    return record.accessToken!;
  }

  /** A field kept beside the tokens (an account key, a principal), if known. */
  async extra(name: string): Promise<string | undefined> {
    if (this.cached?.extra[name] !== undefined) return this.cached.extra[name];
    const stored = await this.opts.store.read(this.opts.key);
    return stored?.extra[name];
  }

  async setExtra(name: string, value: string): Promise<void> {
    await this.opts.store.update(this.opts.key, async (current) => {
      const base = current ?? emptyTokens();
      const next = { ...base, extra: { ...base.extra, [name]: value }, version: base.version + 1, updatedAt: this.clock.now() };
      return { next, result: next };
    }).then((record) => this.remember(record));
  }

  /**
   * Takes the refresh token a user gave in the node's credentials. It replaces the stored chain only
   * when it is a new one: after a rotation the store holds a newer token than the credentials do,
   * and Node-RED saves credentials only on deploy (node-red#1055).
   */
  async seed(refreshToken: string): Promise<boolean> {
    registerSecret(refreshToken);
    const fp = fingerprint(refreshToken);
    const { record, seeded } = await this.opts.store.update(this.opts.key, async (current) => {
      if (current?.seedFingerprint === fp) return { result: { record: current, seeded: false } };
      const next: StoredTokens = {
        ...emptyTokens(),
        extra: current?.extra ?? {},
        refreshToken,
        seedFingerprint: fp,
        version: (current?.version ?? 0) + 1,
        updatedAt: this.clock.now(),
      };
      return { next, result: { record: next, seeded: true } };
    });
    this.remember(record);
    return seeded;
  }

  /** Stores the tokens of a completed authorization-code exchange. */
  async authorize(response: TokenResponse, seedRefreshToken?: string): Promise<void> {
    const record = await this.opts.store.update(this.opts.key, async (current) => {
      const next = this.fromResponse(current ?? emptyTokens(), response);
      if (seedRefreshToken) next.seedFingerprint = fingerprint(seedRefreshToken);
      return { next, result: next };
    });
    this.remember(record);
  }

  /** The stored state, read afresh: authorized, needs authorization, or nothing stored yet. */
  async state(): Promise<TokenStateEvent | null> {
    const stored = await this.opts.store.read(this.opts.key);
    if (!stored || (!stored.refreshToken && !stored.accessToken && stored.state === "authorized")) return null;
    this.remember(stored);
    return { state: stored.state, reason: stored.reason ?? undefined };
  }

  /** One refresh for every caller; it counts in the run of the caller that started it. */
  private refreshShared(rejected?: string, counts?: RunCounts): Promise<StoredTokens> {
    this.inflight ??= this.refreshFromStore(rejected, counts).finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  private async refreshFromStore(rejected?: string, counts?: RunCounts): Promise<StoredTokens> {
    // The cache learns a record only once the store has it durably, so no caller ever gets an
    // access token whose rotated refresh token could still be lost.
    const outcome = await this.opts.store.update<{ record?: StoredTokens; error?: AuthorizationRequiredError; rotated?: boolean }>(
      this.opts.key,
      async (current) => {
        if (!current || (!current.refreshToken && !current.accessToken)) {
          return { result: { error: new AuthorizationRequiredError(`there is no token yet: paste a refresh token or use Authorize in the ${this.opts.label}`) } };
        }
        if (current.state === "needs-authorization") {
          return { result: { record: current, error: new AuthorizationRequiredError(current.reason ?? `authorize again in the ${this.opts.label}`) } };
        }
        const now = this.clock.now();
        if (current.accessToken && current.refreshAt !== null && now < current.refreshAt && current.accessToken !== rejected) {
          return { result: { record: current } }; // another caller or process refreshed it already
        }
        if (!current.refreshToken) {
          return { result: { error: new AuthorizationRequiredError(`the access token expired and there is no refresh token: authorize again in the ${this.opts.label}`) } };
        }
        let response: TokenResponse;
        if (counts) counts.tokenRefreshes++;
        try {
          response = await this.opts.grant.refresh(current.refreshToken);
        } catch (err) {
          if (!(err instanceof GrantRefusedError)) throw err;
          const next: StoredTokens = {
            ...current,
            accessToken: null,
            expiresAt: null,
            refreshAt: null,
            state: "needs-authorization",
            reason: err.message,
            version: current.version + 1,
            updatedAt: now,
          };
          return { next, result: { record: next, error: err } };
        }
        const next = this.fromResponse(current, response);
        return { next, result: { record: next, rotated: next.refreshToken !== current.refreshToken } };
      },
    );
    if (outcome.record) this.remember(outcome.record);
    if (outcome.error) throw outcome.error;
    if (outcome.rotated !== undefined) this.emit("refreshed", { rotated: outcome.rotated });
    return outcome.record!;
  }

  private fromResponse(current: StoredTokens, response: TokenResponse): StoredTokens {
    const now = this.clock.now();
    const lifetime = response.expiresIn * 1000;
    return {
      ...current,
      accessToken: response.accessToken,
      expiresAt: now + lifetime,
      refreshAt: now + lifetime - refreshLead(lifetime),
      // GoTo usually sends no new refresh token: the old one stays valid and must not be lost.
      refreshToken: response.refreshToken ?? current.refreshToken,
      extra: { ...current.extra, ...response.extra },
      state: "authorized",
      reason: null,
      version: current.version + 1,
      updatedAt: now,
    };
  }

  private remember(record: StoredTokens): void {
    registerSecret(record.accessToken);
    registerSecret(record.refreshToken);
    this.cached = record;
    if (record.state !== this.lastState) {
      this.lastState = record.state;
      this.emit("state", { state: record.state, reason: record.reason ?? undefined } satisfies TokenStateEvent);
    }
  }
}
