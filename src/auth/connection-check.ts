import { KeyObject, createPublicKey, randomBytes } from "node:crypto";
import jwt from "jsonwebtoken";
import { CheckFailure, CheckSkipped, ConnectionChecks } from "../core/check-report";
import { JwtAlgorithm, hmacSecret, signingKeys } from "./keys";

export interface JwtKeyCheckSettings {
  algorithm: JwtAlgorithm;
  secret?: string;
  privateKey?: string;
  publicKey?: string;
}

const FIX_IN_DIALOG = "correct the key in the jwt-auth key dialog (Generate makes a new secret)";

/** The jwt-auth key's checks: the secret's strength or the key pair's match, and a sign/verify round trip. */
export async function checkJwtKey(settings: JwtKeyCheckSettings, checks: ConnectionChecks): Promise<void> {
  const algorithm = settings.algorithm || "HS256";
  if (algorithm === "HS256") {
    await checks.run("secret strength", FIX_IN_DIALOG, async () => `${hmacSecret(settings.secret).length} random bytes, enough for HS256`);
  } else {
    await checks.run("key pair", FIX_IN_DIALOG, async () => keyPairMatch(algorithm, settings));
  }
  await checks.run("sign and verify", FIX_IN_DIALOG, async () => {
    const keys = signingKeys(algorithm, settings);
    if (!keys.signWith) throw new CheckSkipped("only a public key is given: this key verifies tokens but cannot issue them");
    const subject = randomBytes(6).toString("hex");
    const token = jwt.sign({ sub: subject }, keys.signWith, { algorithm, expiresIn: 60, audience: "connection-test" });
    const claims = jwt.verify(token, keys.verifyWith, { algorithms: [algorithm], audience: "connection-test" }) as { sub?: string };
    if (claims.sub !== subject) throw new CheckFailure("the token verified with other claims than it was signed with", FIX_IN_DIALOG);
    return `a ${algorithm} token was signed and verified`;
  });
}

async function keyPairMatch(algorithm: JwtAlgorithm, settings: JwtKeyCheckSettings): Promise<string> {
  const keys = signingKeys(algorithm, settings);
  if (!keys.signWith) return "a public key only: tokens are verified, none issued";
  if (!settings.publicKey?.trim()) return `a private ${algorithm} key; its public key is derived from it`;
  if (!samePublicKey(createPublicKey(keys.signWith), keys.verifyWith)) {
    throw new CheckFailure(
      "the public key does not belong to the private key: tokens signed here would be refused",
      "paste the public key that belongs to this private key, or leave the public key empty so it is derived",
    );
  }
  return `the public key belongs to the private ${algorithm} key`;
}

function samePublicKey(a: KeyObject, b: KeyObject): boolean {
  return a.export({ type: "spki", format: "der" }).equals(b.export({ type: "spki", format: "der" }));
}
