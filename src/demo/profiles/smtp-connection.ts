import type { DemoProfile } from "../environment";

export const type = "smtp-connection";

/** The local SMTP server of `npm start`, which keeps every mail as an .eml file. */
export const profile: DemoProfile = (_node, env) => ({
  config: { host: env.smtp.host, port: String(env.smtp.port), security: "none", auth: "none", sender: "monitoring@demo.local" },
});
