import { randomBytes } from "node:crypto";
import { errorMessage } from "../errors";
import { HttpClient } from "../http/client";
import { OAuthGrant, OAuthProfile } from "../tokens/oauth-grant";
import type { NodeAPI } from "./types";

/**
 * The "Authorize" button of a config node's dialog: the authorization-code flow run through the
 * editor. The editor asks an admin route (guarded by the node type's write permission) to start;
 * the route keeps a random `state` bound to the node and the client for ten minutes and answers
 * with the provider's authorize URL. The provider sends the browser back to a callback route,
 * which cannot carry the editor's token and is guarded by that state alone (single use); it
 * exchanges the code. The editor then fetches the resulting refresh token (guarded again) and puts
 * it in the node's credentials, where a deploy stores it and seeds the token store.
 */

const CALLBACK_PATH = "/gluework/oauth/callback";
const STATE_LIFETIME_MS = 10 * 60_000;

interface Pending {
  type: string;
  nodeId: string;
  grant: OAuthGrant;
  redirectUri: string;
  expiresAt: number;
  result?: { refreshToken?: string; error?: string };
}

const pending = new Map<string, Pending>();
// Per admin app: a runtime has one for its life, but a test runtime makes a new one per flow load.
const registered = new WeakMap<object, Set<string>>();

export interface AuthorizeRouteOptions {
  /** The config node type, e.g. "goto-credentials": its permission guards the routes. */
  type: string;
  /** The provider's OAuth profile, given the auth host override from the dialog. */
  profile(authHost: string | undefined): OAuthProfile;
}

/** What a deployed config node tells the Authorize route: its auth host and its redirect URI. */
export interface AuthorizeTarget {
  authorizeHost?: string;
  authorizeRedirectUri?: string;
}

/** A request field as a non-empty string, or undefined for anything else (array, object, number). */
function text(value: unknown): string | undefined {
  return typeof value === "string" && value ? value : undefined;
}

export function registerAuthorizeRoutes(RED: NodeAPI, options: AuthorizeRouteOptions): void {
  let types = registered.get(RED.httpAdmin);
  const firstOnThisApp = !types;
  if (!types) registered.set(RED.httpAdmin, (types = new Set()));
  if (types.has(options.type)) return;
  types.add(options.type);
  const permission = RED.auth.needsPermission(`${options.type}.write`);
  const http = new HttpClient({ name: options.profile(undefined).name, baseUrl: "http://127.0.0.1/", timeoutMs: 20_000 });

  RED.httpAdmin.post(`/gluework/oauth/${options.type}/start`, permission, (req: any, res: any) => {
    forgetExpired();
    const nodeId = text(req.body?.nodeId);
    // Where the secret goes (the auth host) and where the code goes (the redirect URI) come from
    // the deployed node only: a request must not be able to send the stored secret elsewhere.
    const node = nodeId ? (RED.nodes.getNode(nodeId) as (AuthorizeTarget & { type?: string }) | null) : null;
    if (!node || node.type !== options.type) {
      res.status(404).json({ error: `this ${options.type} node is not deployed yet: deploy it, then authorize` });
      return;
    }
    const stored = (RED.nodes as any).getCredentials?.(nodeId) as Record<string, unknown> | undefined;
    const clientId = text(stored?.clientId);
    const clientSecret = text(stored?.clientSecret);
    const redirectUri = text(node.authorizeRedirectUri);
    if (!clientId || !clientSecret || !redirectUri) {
      // Name only what is missing: a message listing filled-in fields sends people to the wrong one.
      const missing = [!clientId && "the client id", !clientSecret && "the client secret", !redirectUri && "the redirect URI (open the node's dialog and press Done, which fills it in)"].filter(Boolean) as string[];
      const list = missing.length > 1 ? `${missing.slice(0, -1).join(", ")} and ${missing.at(-1)}` : missing[0];
      res.status(400).json({ error: `${list} ${missing.length > 1 ? "are" : "is"} missing in the deployed node: fill ${missing.length > 1 ? "them" : "it"} in and deploy, then press Authorize again` });
      return;
    }
    const profile = options.profile(text(node.authorizeHost));
    const state = randomBytes(24).toString("base64url");
    const grant = new OAuthGrant(profile, { clientId, clientSecret }, http);
    pending.set(state, { type: options.type, nodeId: nodeId!, grant, redirectUri, expiresAt: Date.now() + STATE_LIFETIME_MS });
    res.json({ state, authorizeUrl: grant.authorizeUrl(state, redirectUri) });
  });

  RED.httpAdmin.get(`/gluework/oauth/${options.type}/result/:state`, permission, (req: any, res: any) => {
    const entry = pending.get(String(req.params.state));
    if (!entry || entry.type !== options.type) {
      res.status(404).json({ status: "unknown" });
      return;
    }
    if (!entry.result) {
      res.json({ status: "pending" });
      return;
    }
    pending.delete(String(req.params.state));
    if (entry.result.error) res.json({ status: "error", message: entry.result.error });
    else res.json({ status: "done", refreshToken: entry.result.refreshToken });
  });

  if (!firstOnThisApp) return;
  RED.httpAdmin.get(CALLBACK_PATH, (req: any, res: any) => {
    handleCallback(req.query ?? {})
      .catch(() => ({ status: 500, message: "The authorization could not be completed here; see the Node-RED log." }))
      .then(({ status, message }) => res.status(status).type("html").send(page(message)))
      .catch(() => undefined);
  });
}

async function handleCallback(query: Record<string, unknown>): Promise<{ status: number; message: string }> {
  forgetExpired();
  // A parameter given twice or with brackets arrives as an array or an object: never trusted.
  const state = text(query.state);
  const error = text(query.error) ?? (query.error === undefined ? undefined : "unreadable error");
  const code = text(query.code);
  const entry = state ? pending.get(state) : undefined;
  if (!entry) return { status: 400, message: "This authorization is unknown or expired. Start again with Authorize in the Node-RED editor." };
  if (entry.result) return { status: 400, message: "This authorization was already used. Start again with Authorize in the Node-RED editor." };
  if (error) {
    const shown = error.replace(/[^\w .-]/g, "").slice(0, 60);
    entry.result = { error: `the provider refused: ${shown}` };
    return { status: 401, message: `Authorization was refused (${escapeHtml(shown)}). Nothing was changed.` };
  }
  if (!code) {
    entry.result = { error: "the provider sent no code" };
    return { status: 400, message: "The provider sent no authorization code." };
  }
  try {
    const tokens = await entry.grant.exchangeCode(code, entry.redirectUri);
    if (!tokens.refreshToken) throw new Error("the provider gave no refresh token");
    entry.result = { refreshToken: tokens.refreshToken };
    return { status: 200, message: "Authorized. Go back to the Node-RED editor: the refresh token is filled in; deploy to use it." };
  } catch (err) {
    entry.result = { error: errorMessage(err) };
    return { status: 400, message: `The code could not be exchanged: ${escapeHtml(errorMessage(err))}` };
  }
}

function forgetExpired(): void {
  const now = Date.now();
  for (const [state, entry] of pending) if (entry.expiresAt < now) pending.delete(state);
}

function page(message: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Node-RED authorization</title></head><body style="font-family:sans-serif;margin:3em"><p>${message}</p></body></html>`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
