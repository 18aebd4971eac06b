import type { DemoProfile } from "../environment";

export const type = "postgres-database";

/** The embedded database, or the server that DATABASE_URL names. */
export const profile: DemoProfile = (_node, env) =>
  env.databaseUrl ? { config: { mode: "server" }, credentials: { url: env.databaseUrl } } : { config: { mode: "embedded" } };
