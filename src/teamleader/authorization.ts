import { createHash, randomBytes } from "node:crypto";
import { ConfigError, PipelineError, errorMessage } from "../core/errors";
import { Database, Migration } from "../core/db/database";
import { GrantRefusedError } from "../core/tokens/oauth-grant";

/** How long an authorization may take from the link to the callback: Teamleader's codes live 10 minutes. */
export const STATE_LIFETIME_MS = 10 * 60_000;

export const AUTHORIZATION_MIGRATIONS: readonly Migration[] = [
  {
    id: 1,
    description: "pending Teamleader authorizations",
    sql: `CREATE TABLE IF NOT EXISTS teamleader_oauth_states (
      state_hash text PRIMARY KEY,
      connection_key text NOT NULL,
      redirect_uri text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL,
      used_at timestamptz
    )`,
  },
];

export type StateRefusal = "unknown" | "used" | "expired" | "other-connection";

/**
 * The `state` of each authorization started from a teamleader-connection node: random, bound to
 * the connection, usable once and for ten minutes. Kept in the database (only a hash of it), so
 * whichever Node-RED instance receives the callback can check it, and taking it is one atomic
 * UPDATE, so two callbacks with the same state cannot both pass.
 */
export class AuthorizationStates {
  private ready?: Promise<unknown>;

  constructor(
    private readonly db: Database,
    private readonly lifetimeMs = STATE_LIFETIME_MS,
  ) {}

  async create(connectionKey: string, redirectUri: string): Promise<string> {
    await this.migrated();
    const state = randomBytes(32).toString("base64url");
    // Forget what can no longer be used, so the table stays small.
    await this.db.query("DELETE FROM teamleader_oauth_states WHERE expires_at < now() - interval '1 day'");
    await this.db.query(
      "INSERT INTO teamleader_oauth_states (state_hash, connection_key, redirect_uri, expires_at) VALUES ($1, $2, $3, now() + $4 * interval '1 millisecond')",
      [hash(state), connectionKey, redirectUri, this.lifetimeMs],
    );
    return state;
  }

  /** Uses `state` up for `connectionKey`: the redirect URI it was made with, or why it cannot be used. */
  async take(state: string, connectionKey: string): Promise<{ redirectUri: string } | { refused: StateRefusal }> {
    await this.migrated();
    const { rows } = await this.db.query<{ redirect_uri: string }>(
      `UPDATE teamleader_oauth_states SET used_at = now()
       WHERE state_hash = $1 AND connection_key = $2 AND used_at IS NULL AND expires_at > now()
       RETURNING redirect_uri`,
      [hash(state), connectionKey],
    );
    if (rows[0]) return { redirectUri: rows[0].redirect_uri };
    const { rows: found } = await this.db.query<{ connection_key: string; used: boolean; expired: boolean }>(
      "SELECT connection_key, used_at IS NOT NULL AS used, expires_at <= now() AS expired FROM teamleader_oauth_states WHERE state_hash = $1",
      [hash(state)],
    );
    const row = found[0];
    if (!row) return { refused: "unknown" };
    if (row.connection_key !== connectionKey) return { refused: "other-connection" };
    if (row.used) return { refused: "used" };
    return { refused: "expired" };
  }

  private migrated(): Promise<unknown> {
    this.ready ??= this.db.migrate("teamleader-oauth", AUTHORIZATION_MIGRATIONS).catch((err) => {
      this.ready = undefined;
      throw err;
    });
    return this.ready;
  }
}

function hash(state: string): string {
  return createHash("sha256").update(state).digest("base64url");
}

export interface CallbackAnswer {
  accepted: boolean;
  /** The HTTP status for `http response`. */
  statusCode: number;
  /** What the person in the browser reads (no secret in it). */
  message: string;
  /** A failure on our side, for the Catch node (a refusal of the request itself is not one). */
  error?: PipelineError;
}

export interface CallbackContext {
  states: AuthorizationStates;
  connectionKey: string;
  /** The config node as a user finds it: "teamleader-connection node 'Main'". */
  label: string;
  /** Exchanges the code and stores the tokens. */
  exchange(code: string, redirectUri: string): Promise<void>;
}

const REFUSALS: Record<StateRefusal, string> = {
  unknown: "the state does not belong to an authorization started here",
  "other-connection": "the state belongs to another Teamleader connection",
  used: "this authorization was already used; a link works once",
  expired: "this authorization expired; a link works for 10 minutes",
};

/**
 * The OAuth callback Teamleader sends the browser to: `?code=…&state=…`, or `?error=access_denied`
 * when the person refused. The state is checked and used up before the code is exchanged, once.
 */
export async function answerCallback(query: Record<string, unknown>, context: CallbackContext): Promise<CallbackAnswer> {
  // A parameter given twice arrives as an array: not a value to trust.
  const text = (name: string) => (typeof query[name] === "string" && query[name] ? (query[name] as string) : undefined);
  const state = text("state");
  const code = text("code");
  const error = text("error");
  const again = `Start again with Authorize in the ${context.label}.`;

  if (error) {
    if (state) await context.states.take(state, context.connectionKey).catch(() => undefined);
    if (error === "access_denied") {
      return { accepted: false, statusCode: 401, message: `Authorization refused: access to Teamleader was not granted, so nothing changed. ${again}` };
    }
    return { accepted: false, statusCode: 400, message: `code rejected: Teamleader reported "${error.replace(/[^\w.-]/g, "").slice(0, 60)}". ${again}` };
  }
  if (!state) return { accepted: false, statusCode: 400, message: `code rejected: the state is missing. ${again}` };
  if (!code) return { accepted: false, statusCode: 400, message: `code rejected: the code is missing. ${again}` };

  const taken = await context.states.take(state, context.connectionKey);
  if ("refused" in taken) return { accepted: false, statusCode: 401, message: `code rejected: ${REFUSALS[taken.refused]}. ${again}` };

  try {
    await context.exchange(code, taken.redirectUri);
  } catch (err) {
    if (err instanceof GrantRefusedError) {
      const hint = (err.cause as { body?: { errors?: Array<{ meta?: { hint?: string } }> } })?.body?.errors?.[0]?.meta?.hint;
      return { accepted: false, statusCode: 400, message: `code rejected: Teamleader refused the authorization code${hint ? ` (${hint})` : ""}; a code works once and for 10 minutes. ${again}` };
    }
    const failure = err instanceof PipelineError ? err : new PipelineError(errorMessage(err), { cause: err });
    const statusCode = err instanceof ConfigError ? 400 : 502;
    return { accepted: false, statusCode, message: `code rejected: ${failure.message}`, error: failure };
  }
  return { accepted: true, statusCode: 200, message: `code accepted: the ${context.label} is authorized; you can close this window.` };
}

/** A small page for the browser around `message`. */
export function callbackPage(answer: CallbackAnswer): string {
  const escaped = answer.message.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  return `<!doctype html><html><head><meta charset="utf-8"><title>Teamleader authorization</title></head><body style="font-family:sans-serif;margin:3em"><p>${escaped}</p></body></html>`;
}
