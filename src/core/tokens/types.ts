/** What a provider's token endpoint gave us. */
export interface TokenResponse {
  accessToken: string;
  /** Seconds the access token lives, as the provider said. */
  expiresIn: number;
  /** A new refresh token, when the provider rotated it; absent when the old one stays valid. */
  refreshToken?: string;
  /** Other fields worth keeping (GoTo's principal, a scope, an account key). */
  extra?: Record<string, string>;
}

export type TokenState = "authorized" | "needs-authorization";

/** One connection's tokens as a store keeps them. */
export interface StoredTokens {
  accessToken: string | null;
  /** When the access token stops working, epoch ms. */
  expiresAt: number | null;
  /** When to replace it ahead of expiry, epoch ms. */
  refreshAt: number | null;
  refreshToken: string | null;
  extra: Record<string, string>;
  state: TokenState;
  /** Why a person has to authorize again (no secret in it). */
  reason: string | null;
  /** A fingerprint of the refresh token the user last gave in the node's credentials. */
  seedFingerprint: string | null;
  /** Increases on every write. */
  version: number;
  updatedAt: number;
}

/**
 * A durable home for tokens. `update` holds an exclusive lock on `key` across every process that
 * shares the store, hands the current record to `change`, and writes what it returns durably
 * before resolving: a rotated refresh token is on disk before anyone uses the new access token.
 */
export interface TokenStore {
  readonly kind: "file" | "postgres";
  read(key: string): Promise<StoredTokens | null>;
  /** Reads without creating anything (no table, no directory): for a connection test, which writes nothing. */
  peek(key: string): Promise<StoredTokens | null>;
  update<T>(key: string, change: (current: StoredTokens | null) => Promise<TokenUpdate<T>>): Promise<T>;
  delete(key: string): Promise<void>;
  close(): Promise<void>;
}

export interface TokenUpdate<T> {
  /** The record to write, or `undefined` to leave the stored one as it is. */
  next?: StoredTokens;
  result: T;
}

export function emptyTokens(): StoredTokens {
  return {
    accessToken: null,
    expiresAt: null,
    refreshAt: null,
    refreshToken: null,
    extra: {},
    state: "authorized",
    reason: null,
    seedFingerprint: null,
    version: 0,
    updatedAt: 0,
  };
}
