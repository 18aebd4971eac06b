import assert from "node:assert/strict";
import net from "node:net";
import tls from "node:tls";
import azureStorageAccount from "../../src/nodes/azure-storage-account";
import gotoCredentials from "../../src/nodes/goto-credentials";
import graphApp from "../../src/nodes/graph-app";
import postgresDatabase from "../../src/nodes/postgres-database";
import smtpConnection from "../../src/nodes/smtp-connection";
import teamleaderConnection from "../../src/nodes/teamleader-connection";
import type { CheckLine } from "../../src/core/check-report";
import { nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { selfSignedCertificate } from "../support/tls";
import { testConnection } from "./report";

const helper = nodeRed();

/** A name that never resolves (RFC 2606 keeps .invalid out of DNS). */
const NOWHERE = "gw-no-such-host.invalid";

type Body = { config: Record<string, unknown>; credentials: Record<string, unknown>; options?: Record<string, unknown> };

/** Each config type with its service at `base` (a URL) or `host` and `port`. */
const TYPES: Array<{ type: string; body: (base: string, host: string, port: number, secure: boolean) => Body }> = [
  { type: "goto-credentials", body: (base) => ({ config: { authHost: base, apiHost: base, store: "file" }, credentials: { clientId: "goto-client", clientSecret: "s3cr3t-for-tests", refreshToken: "r3fr3sh-for-tests" } }) },
  { type: "teamleader-connection", body: (base) => ({ config: { authHost: base, apiHost: base, redirectUri: "http://127.0.0.1:1880/tl/callback", database: "db" }, credentials: { clientId: "tl-client", clientSecret: "s3cr3t-for-tests", refreshToken: "r3fr3sh-for-tests" } }) },
  { type: "graph-app", body: (base) => ({ config: { tenantId: "contoso.test", clientId: "3f0c6a51-6d8e-4b55-9a7e-0d5f6c2d1a11", authType: "secret", authorityHost: base, graphUrl: base }, credentials: { clientSecret: "s3cr3t-for-tests" } }) },
  { type: "azure-storage-account", body: (base) => ({ config: { auth: "key", accountName: "devstoreaccount1", endpoint: `${base}/devstoreaccount1` }, credentials: { accountKey: Buffer.from("key").toString("base64") }, options: { container: "audit" } }) },
  { type: "smtp-connection", body: (_base, host, port, secure) => ({ config: { host, port: String(port), security: secure ? "tls" : "none", verifyCertificate: true, auth: "none", sender: "desk@example.com" }, credentials: {} }) },
  { type: "postgres-database", body: (_base, host, port, secure) => ({ config: { mode: "server", host, port: String(port), database: "test", ssl: secure ? "verify-full" : "disable" }, credentials: { user: "postgres" } }) },
];

function onlyFailure(lines: CheckLine[], what: string): CheckLine {
  const failed = lines.filter((l) => l.outcome === "failed");
  assert.equal(failed.length, 1, `${what}: ${JSON.stringify(lines)}`);
  return failed[0]!;
}

/** A TLS server with a self-signed certificate; PostgreSQL's SSLRequest is answered first. */
async function untrustedTls(postgres: boolean): Promise<{ port: number; close(): Promise<void> }> {
  const { key, cert } = selfSignedCertificate();
  const sockets = new Set<net.Socket>();
  const secure = (raw: net.Socket) => new tls.TLSSocket(raw, { isServer: true, key, cert }).on("error", () => undefined);
  const server = net.createServer((raw) => {
    sockets.add(raw);
    raw.on("error", () => undefined);
    if (!postgres) {
      secure(raw);
      return;
    }
    // PostgreSQL asks for TLS with 8 bytes first (length 8, code 80877103), answered with "S".
    raw.once("data", () => {
      raw.write("S");
      secure(raw);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe("connection test causes and fixes", function () {
  this.timeout(120_000);
  let db: TestDatabase;
  before(async () => {
    db = await createTestDatabase();
  });
  after(() => db?.drop());
  afterEach(() => helper.unload());

  const load = () =>
    helper.load(
      [postgresDatabase, gotoCredentials, teamleaderConnection, graphApp, azureStorageAccount, smtpConnection],
      [{ id: "db", type: "postgres-database", mode: "server", database: "x", ssl: "disable" }],
      { db: { url: db.url } },
    );

  for (const { type, body } of TYPES) {
    it(`${type}: a host name that does not resolve is named, with the DNS fix`, async () => {
      await load();
      const started = Date.now();
      const report = await testConnection(type, { id: `${type}-dns`, ...body(`http://${NOWHERE}:8080`, NOWHERE, 8080, false) });
      const failed = onlyFailure(report.checks, type);
      assert.equal(failed.detail, `the host name ${NOWHERE} does not resolve`);
      assert.equal(failed.fix, "check the spelling of the host name, and that the machine running Node-RED can resolve it (its DNS settings)");
      assert.ok(Date.now() - started < 10_000, "a name that does not resolve is told at once, not at the deadline");
    });
  }

  // graph-app's token comes from MSAL, which first asks login.microsoftonline.com about any https authority.
  for (const { type, body } of TYPES.filter((t) => t.type !== "graph-app")) {
    it(`${type}: a certificate Node-RED does not trust is named, with the certificate fix`, async () => {
      const server = await untrustedTls(type === "postgres-database");
      try {
        await load();
        const report = await testConnection(type, { id: `${type}-tls`, ...body(`https://127.0.0.1:${server.port}`, "127.0.0.1", server.port, true) });
        const failed = onlyFailure(report.checks, type);
        assert.equal(failed.detail, `the certificate of 127.0.0.1:${server.port} is not trusted (self-signed certificate)`);
        assert.equal(failed.fix, "check that the host is the service's; if it is, let Node-RED trust the certificate's issuer (NODE_EXTRA_CA_CERTS=<its CA file> in Node-RED's environment)");
      } finally {
        await server.close();
      }
    });
  }

  it("smtp-connection: empty fields name the missing field and nothing else", async () => {
    await load();
    const report = await testConnection("smtp-connection", { id: "m-empty", config: { host: "", port: "", security: "starttls", auth: "password", sender: "" }, credentials: {} });
    const failed = onlyFailure(report.checks, "smtp");
    assert.deepEqual({ check: failed.check, detail: failed.detail, fix: failed.fix }, { check: "connect with STARTTLS", detail: "no host is set", fix: "fill in the SMTP server's host" });
    assert.doesNotMatch(JSON.stringify(report), /socket|is not a function|settings/);
  });

  it("every config type with empty fields names the missing field and its fix, and nothing else", async () => {
    await load();
    const expected: Record<string, [string, string, string]> = {
      "goto-credentials": ["client id and secret", "the client id or the client secret is empty", "fill in both from the OAuth client (integration) of the provider"],
      "teamleader-connection": ["client id and secret", "the client id or the client secret is empty", "fill in both from the OAuth client (integration) of the provider"],
      "graph-app": ["app settings", "the Entra ID app has no tenant id: set it in the graph-app node", "fill in the tenant id, the client id, and the secret or certificate"],
      "azure-storage-account": ["account settings", "the azure-storage-account node has no account name", "fill in the account name and key, the connection string or the SAS URL"],
      "smtp-connection": ["connect with STARTTLS", "no host is set", "fill in the SMTP server's host"],
      "postgres-database": ["settings", "the postgres-database node needs a database name or a connection string", "correct the setting named here, then test again"],
    };
    for (const [type, [check, detail, fix]] of Object.entries(expected)) {
      const report = await testConnection(type, { id: `${type}-empty`, config: { mode: "server" }, credentials: {} });
      const failed = onlyFailure(report.checks, type);
      assert.deepEqual({ check: failed.check, detail: failed.detail, fix: failed.fix }, { check, detail, fix }, type);
    }
  });

  it("says in words which field moved when a stored secret is not used", async () => {
    await helper.load([gotoCredentials], [{ id: "g1", type: "goto-credentials", authHost: "https://authentication.logmeininc.com", apiHost: "https://api.getgo.com", store: "file" }], { g1: { clientId: "goto-client", clientSecret: "s3cr3t-for-tests", refreshToken: "r3fr3sh-for-tests" } });
    const report = await testConnection("goto-credentials", { id: "g1", config: { authHost: `http://${NOWHERE}:8080`, apiHost: "https://api.getgo.com", store: "file" }, credentials: { clientId: "goto-client" } });
    const note = report.checks.find((l) => l.check === "stored secrets");
    assert.equal(note?.detail, "not used: the auth host differs from the deployed node's, and a stored secret goes only where the deployed node points");
  });
});
