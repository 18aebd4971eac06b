import type { DemoProfile } from "../environment";

export const type = "azure-storage-account";

/** Azurite, through its connection string (Azurite's public development account). */
export const profile: DemoProfile = (_node, env) => ({
  config: { auth: "connection-string" },
  credentials: { connectionString: env.azurite.connectionString },
});
