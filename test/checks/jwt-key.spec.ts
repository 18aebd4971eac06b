import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { generateSecret } from "../../src/auth/keys";
import jwtAuthKey from "../../src/nodes/jwt-auth-key";
import jwtAuth from "../../src/nodes/jwt-auth";
import { nodeRed } from "../support/node-red";
import { expectLine, testConnection } from "./report";

const helper = nodeRed();

const pem = (bits = 2048) => {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: bits });
  return { privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString(), publicKey: publicKey.export({ type: "spki", format: "pem" }).toString() };
};

describe("jwt-auth-key connection test", () => {
  afterEach(() => helper.unload());

  it("passes a generated secret and signs and verifies a token with it", async () => {
    await helper.load(jwtAuthKey, []);
    const report = await testConnection("jwt-auth-key", { id: "k1", config: { algorithm: "HS256" }, credentials: { secret: generateSecret() } });
    expectLine(report, "secret strength", "passed", /32 random bytes/);
    expectLine(report, "sign and verify", "passed");
    assert.equal(report.ok, true);
  });

  it("fails a short secret, says why and to use Generate", async () => {
    await helper.load(jwtAuthKey, []);
    const report = await testConnection("jwt-auth-key", { id: "k1", config: { algorithm: "HS256" }, credentials: { secret: "c2hvcnQ" } });
    expectLine(report, "secret strength", "failed", /bytes; HS256 needs at least 32.*Generate/);
    assert.equal(report.ok, false);
  });

  it("fails a public key that does not belong to the private key", async () => {
    await helper.load(jwtAuthKey, []);
    const report = await testConnection("jwt-auth-key", { id: "k1", config: { algorithm: "RS256", publicKey: pem().publicKey }, credentials: { privateKey: pem().privateKey } });
    expectLine(report, "key pair", "failed", /does not belong to the private key/);
    expectLine(report, "sign and verify", "failed");
  });

  it("passes a matching key pair", async () => {
    await helper.load(jwtAuthKey, []);
    const pair = pem();
    const report = await testConnection("jwt-auth-key", { id: "k1", config: { algorithm: "RS256", publicKey: pair.publicKey }, credentials: { privateKey: pair.privateKey } });
    expectLine(report, "key pair", "passed", /belongs/);
    expectLine(report, "sign and verify", "passed");
  });

  it("skips the round trip for a key with a public key only", async () => {
    await helper.load(jwtAuthKey, []);
    const report = await testConnection("jwt-auth-key", { id: "k1", config: { algorithm: "RS256", publicKey: pem().publicKey }, credentials: {} });
    expectLine(report, "sign and verify", "skipped", /cannot issue/);
    assert.equal(report.ok, true);
  });

  it("takes the deployed secret for the editor's placeholder", async () => {
    const flow = [{ id: "k1", type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api" }];
    await helper.load(jwtAuthKey, flow, { k1: { secret: generateSecret() } });
    const report = await testConnection("jwt-auth-key", { id: "k1", config: { algorithm: "HS256" }, credentials: { secret: "__PWRD__" } });
    expectLine(report, "secret strength", "passed");
  });

  it("answers a test message on a jwt-auth node with the report on its output", async () => {
    const flow = [
      { id: "k1", type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api" },
      { id: "auth", type: "jwt-auth", key: "k1", wires: [["out"], []] },
      { id: "out", type: "helper" },
    ];
    await helper.load([jwtAuthKey, jwtAuth], flow, { k1: { secret: "c2hvcnQ" } });
    const out = helper.getNode("out");
    const got = new Promise<any>((resolve) => out.on("input", resolve));
    helper.getNode("auth").receive({ topic: "test" } as never);
    const msg = await got;
    assert.equal(msg.payload.ok, false);
    assert.equal(msg.payload.reports[0].type, "jwt-auth-key");
    expectLine(msg.payload.reports[0], "secret strength", "failed");
  });
});
