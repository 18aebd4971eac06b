import { KeyObject, createPrivateKey, createPublicKey, createSecretKey, randomBytes } from "node:crypto";
import { deflateRawSync } from "node:zlib";
import { ConfigError } from "../core/errors";
import { wholePem } from "../core/pem";

export type JwtAlgorithm = "HS256" | "RS256" | "ES256";
export const JWT_ALGORITHMS: readonly JwtAlgorithm[] = ["HS256", "RS256", "ES256"];

/** RFC 7518 §3.2: an HS256 key at least as long as the hash output. */
export const MIN_SECRET_BYTES = 32;

/** The keys one algorithm signs and verifies with. */
export interface SigningKeys {
  algorithm: JwtAlgorithm;
  /** Absent when only a public key was given: such a key verifies but cannot issue tokens. */
  signWith?: KeyObject;
  verifyWith: KeyObject;
}

/** 32 fresh random bytes in base64url, what the dialog's Generate button makes. */
export function generateSecret(): string {
  return randomBytes(MIN_SECRET_BYTES).toString("base64url");
}

/**
 * The HMAC key written in a secret field: base64, base64url or hex of at least 32 random bytes.
 * A secret is refused with the reason when it is too short, not encoded, or visibly not random
 * (few distinct characters, or bytes that repeat so that they compress).
 */
export function hmacSecret(text: string | undefined): Buffer {
  const written = (text ?? "").trim();
  if (!written) throw new ConfigError("the key has no secret: use Generate in the jwt-auth key dialog", { status: "missing key secret" });
  let bytes: Buffer;
  let alphabet: number;
  if (/^[0-9a-fA-F]+$/.test(written) && written.length % 2 === 0) {
    bytes = Buffer.from(written, "hex");
    alphabet = 16;
  } else if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(written)) {
    bytes = Buffer.from(written, "base64");
    alphabet = 64;
  } else {
    throw new ConfigError("the secret must be random bytes written in base64 or hex (no spaces or punctuation): use Generate in the jwt-auth key dialog");
  }
  if (bytes.length < MIN_SECRET_BYTES) {
    throw new ConfigError(`the secret is ${bytes.length} bytes; HS256 needs at least ${MIN_SECRET_BYTES} random bytes (RFC 7518 §3.2): use Generate in the jwt-auth key dialog`);
  }
  const distinct = new Set(written.replace(/=+$/, "")).size;
  const expected = alphabet === 16 ? 12 : 20; // 32 random bytes show about 16 of 16 hex digits and 31 of 64 base64 characters
  if (distinct < expected) {
    throw new ConfigError(`the secret uses only ${distinct} different characters, so it is not random: use Generate in the jwt-auth key dialog`);
  }
  if (deflateRawSync(bytes).length < bytes.length * 0.9) {
    throw new ConfigError("the secret repeats itself, so it is not random: use Generate in the jwt-auth key dialog");
  }
  return bytes;
}

/** The keys for `algorithm` from the key node's fields, checked against that algorithm. */
export function signingKeys(algorithm: JwtAlgorithm, fields: { secret?: string; privateKey?: string; publicKey?: string }): SigningKeys {
  if (algorithm === "HS256") {
    // A KeyObject, not the bytes: jsonwebtoken turns bytes into a key on every call, 30 times slower.
    const secret = createSecretKey(hmacSecret(fields.secret));
    return { algorithm, signWith: secret, verifyWith: secret };
  }
  if (!JWT_ALGORITHMS.includes(algorithm)) throw new ConfigError(`unknown algorithm ${String(algorithm)}: choose HS256, RS256 or ES256`);
  let privateKey: KeyObject | undefined;
  let publicKey: KeyObject | undefined;
  try {
    if (fields.privateKey?.trim()) privateKey = createPrivateKey(wholePem(fields.privateKey));
    if (fields.publicKey?.trim()) publicKey = createPublicKey(wholePem(fields.publicKey));
  } catch (err) {
    throw new ConfigError(`the ${algorithm} key is not a PEM key this machine can read: ${(err as Error).message}`, { cause: err });
  }
  if (!privateKey && !publicKey) throw new ConfigError(`${algorithm} needs a PEM private key (to issue tokens) or a public key (to verify them)`, { status: "missing private or public key" });
  publicKey ??= createPublicKey(privateKey!);
  for (const key of [privateKey, publicKey]) if (key) checkAsymmetric(algorithm, key);
  return { algorithm, signWith: privateKey, verifyWith: publicKey };
}

function checkAsymmetric(algorithm: JwtAlgorithm, key: KeyObject): void {
  const details = key.asymmetricKeyDetails ?? {};
  if (algorithm === "RS256") {
    if (key.asymmetricKeyType !== "rsa") throw new ConfigError(`RS256 needs an RSA key, not ${key.asymmetricKeyType}`);
    if ((details.modulusLength ?? 0) < 2048) throw new ConfigError(`the RSA key has ${details.modulusLength} bits; RS256 needs at least 2048`);
  } else if (algorithm === "ES256") {
    if (key.asymmetricKeyType !== "ec" || details.namedCurve !== "prime256v1") {
      throw new ConfigError(`ES256 needs an EC key on the P-256 curve, not ${key.asymmetricKeyType}${details.namedCurve ? ` ${details.namedCurve}` : ""}`);
    }
  }
}
