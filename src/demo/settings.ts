// Node-RED's settings for `npm start`: loopback only unless HOST says otherwise, this package
// loaded from the working copy, and every other choice left at Node-RED's defaults.
import path from "node:path";

const repoRoot = path.resolve(__dirname, "..", "..", "..");

export = {
  uiHost: process.env.HOST ?? "127.0.0.1",
  uiPort: Number(process.env.NODE_RED_PORT ?? 1880),
  flowFile: "flows.json",
  // "false" turns the credentials' encryption off, as `credentialSecret: false` does.
  credentialSecret: process.env.NODE_RED_CREDENTIAL_SECRET === "false" ? false : process.env.NODE_RED_CREDENTIAL_SECRET,
  nodesDir: [repoRoot],
  logging: { console: { level: process.env.NODE_RED_LOG_LEVEL ?? "info", metrics: false, audit: false } },
  editorTheme: { tours: false },
  // Behind a reverse proxy: which proxies to believe about the client's address (X-Forwarded-For).
  httpServerOptions: process.env.NODE_RED_TRUST_PROXY ? { "trust proxy": trustProxy(process.env.NODE_RED_TRUST_PROXY) } : {},
};

/** Express's `trust proxy`: true or false, a number of hops, or addresses and subnets ("loopback", "10.0.0.0/8"). */
function trustProxy(value: string): boolean | number | string {
  if (/^(true|false)$/i.test(value)) return value.toLowerCase() === "true";
  return /^\d+$/.test(value) ? Number(value) : value;
}
