import { JwtKeyProvider, Refusal, RequestLike, TokenAuthority, cameOverHttps, clientAddress, lifetimeSeconds, loginCredentials, tokenFrom, usedBasic } from "../auth/jwt";
import { asPipelineError } from "../core/errors";
import { configNode } from "../core/node/config";
import { handleInput } from "../core/node/input";
import { Lifecycle } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { StatusReporter, formatCount, showSetupProblem } from "../core/node/status";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";

interface JwtAuthDef extends NodeDef {
  key: string;
  mode: "login" | "verify";
  audience: string;
  lifetime: string;
  fromHeader: boolean;
  fromBearer: boolean;
  fromCookie: boolean;
  cookieName: string;
  setCookie: boolean;
  cookieSecure: boolean;
  sameSite: "strict" | "lax";
}

export = function register(RED: NodeAPI) {
  function JwtAuthNode(this: Node, def: JwtAuthDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    const status = new StatusReporter(node);
    const life = new Lifecycle(node);
    const cookieName = config.cookieName || "token";
    const counts = { ok: 0, refused: 0, last: "" };
    // Counted, and shown at most twice a second: a busy endpoint must not flood the editor.
    life.interval(() => {
      if (counts.ok + counts.refused === 0) return;
      const text = `${formatCount(counts.ok)} ok · ${formatCount(counts.refused)} refused`;
      if (counts.last) status.warn(text);
      else status.ok(text);
    }, 500);
    life.onClose(() => status.clear());
    showSetupProblem(status, () => configNode<JwtKeyProvider>(RED, config.key, "jwt-auth-key", "jwt-auth key").authority());

    handleInput(node, status, async (msg, send) => {
      const req = msg.req as RequestLike | undefined;
      const refuse = (refusal: Refusal, challenge: string | undefined) => {
        counts.refused++;
        counts.last = refusal.reason;
        msg.statusCode = refusal.status;
        msg.payload = { message: refusal.reason };
        const headers: Record<string, string> = { ...(msg.headers as Record<string, string> | undefined) };
        if (challenge) headers["WWW-Authenticate"] = challenge;
        if (refusal.retryAfterS) headers["Retry-After"] = String(refusal.retryAfterS);
        msg.headers = headers;
        send([null, msg]);
      };
      // A key that is not set up answers every request at once, with what to do; the Catch node gets the cause.
      let authority: TokenAuthority;
      let lifetimeS = 3600;
      try {
        authority = configNode<JwtKeyProvider>(RED, config.key, "jwt-auth-key", "jwt-auth key").authority();
      } catch (err) {
        refuse(new Refusal(notSetUp(err), 503, 30), undefined);
        throw err;
      }
      try {
        if (config.mode === "login") lifetimeS = lifetimeSeconds(config.lifetime, 3600);
      } catch (err) {
        refuse(new Refusal("this jwt-auth node's token lifetime is not understood: fix it and deploy", 503, 30), undefined);
        throw err;
      }

      if (config.mode === "login") {
        const credentials = loginCredentials(req, msg.payload);
        let result: Awaited<ReturnType<typeof authority.login>>;
        try {
          result = await authority.login(credentials, clientAddress(req), { audience: config.audience, lifetimeS });
        } catch (err) {
          // The throttle's store is down: the caller still gets an answer, the Catch node the cause.
          refuse(new Refusal("login is not available now; try again later", 503), undefined);
          throw err;
        }
        if (result instanceof Refusal) return refuse(result, usedBasic(req) || !msg.payload ? 'Basic realm="node-red", charset="UTF-8"' : undefined);
        counts.ok++;
        counts.last = "";
        msg.user = { username: credentials!.username };
        msg.statusCode = 200;
        msg.payload = { token: result.token, expiresIn: result.expiresIn };
        if (config.setCookie) {
          msg.cookies = {
            ...(msg.cookies as Record<string, unknown> | undefined),
            [cookieName]: { value: result.token, httpOnly: true, sameSite: config.sameSite || "strict", secure: !!config.cookieSecure || cameOverHttps(req), path: "/", maxAge: result.expiresIn * 1000 },
          };
        }
        send([msg, null]);
        return;
      }

      const token = tokenFrom(req, { header: config.fromHeader !== false, bearer: config.fromBearer !== false, cookie: config.fromCookie ? cookieName : undefined });
      let verified: ReturnType<typeof authority.verify>;
      let expiresAt: string;
      try {
        verified = authority.verify(token, { audience: config.audience });
        if (!(verified instanceof Refusal)) expiresAt = new Date(verified.claims.exp! * 1000).toISOString();
      } catch (err) {
        // Whatever a token holds, its caller gets an answer; the cause goes to the Catch node.
        refuse(new Refusal("invalid token"), 'Bearer error="invalid_token"');
        throw err;
      }
      if (verified instanceof Refusal) {
        // The reason is one of the authority's own fixed phrases; anything else in it is dropped,
        // so nothing a caller sent can reach a header (a CR or LF there stops the answer).
        const description = verified.reason.replace(/[^\w .,:()-]/g, "");
        return refuse(verified, token ? `Bearer error="invalid_token", error_description="${description}"` : "Bearer");
      }
      counts.ok++;
      msg.user = { username: verified.username, expiresAt: expiresAt!, claims: verified.claims };
      send([msg, null]);
    });

    /** What a caller is told when the key is not usable: a missing key by name, any other fault only as such. */
    function notSetUp(err: unknown): string {
      const problem = asPipelineError(err);
      const keyNode = config.key ? (RED.nodes.getNode(config.key) as { name?: string } | null) : null;
      if (!keyNode) return "this jwt-auth node has no key node: choose one and deploy";
      const which = `the jwt-auth key node "${keyNode.name || config.key}"`;
      if (problem.status === "missing key secret") return `${which} has no secret: set it and deploy`;
      if (problem.status === "missing private or public key") return `${which} has no key: set it and deploy`;
      // A weak or unreadable key is described in the Node-RED log, not to any caller.
      return `${which} is not set up correctly (see the Node-RED log): fix it and deploy`;
    }
  }

  RED.nodes.registerType("jwt-auth", JwtAuthNode);
};
