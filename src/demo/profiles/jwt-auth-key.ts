import { randomBytes } from "node:crypto";
import { generateSecret } from "../../auth/keys";
import { hashPassword } from "../../auth/users";
import type { DemoProfile } from "../environment";

export const type = "jwt-auth-key";

/** The demo user name; its password is made once and kept in the state folder (see the README). */
export const DEMO_USER = "demo";

/**
 * A secret made once per issuer and audience, so that keys of different flows that stand for one
 * API (the relay's login, the provisioning and monitor endpoints) accept the same tokens, and one
 * demo user with a generated password, kept across restarts.
 */
export const profile: DemoProfile = async (node, env) => {
  const secret = await env.secret(`jwt-secret:${String(node.issuer ?? "")}/${String(node.audience ?? "")}`, generateSecret);
  const password = await env.secret("demo-user-password", () => randomBytes(12).toString("base64url"));
  const hash = await env.secret("demo-user-password-hash", () => hashPassword(password));
  return { credentials: { secret, users: `${DEMO_USER}:${hash}` } };
};
