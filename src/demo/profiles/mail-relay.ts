import type { DemoProfile } from "../environment";

export const type = "mail-relay";

/** A recipient for the demo's mail (the local SMTP server takes any). */
export const profile: DemoProfile = (node) => ({ config: { to: (node.to as string) || "ops@demo.local" } });
