import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes } from "node:crypto";
import { PipelineError } from "../errors";

const VERSION = "v1";

/** AES-256-GCM with a 32-byte key: what the token stores seal their records with. */
export class TokenCipher {
  private constructor(private readonly key: Buffer) {}

  /** A key from a passphrase (Node-RED's credentialSecret, a client secret), stretched with HKDF. */
  static fromSecret(secret: string, context: string): TokenCipher {
    if (!secret) throw new PipelineError("the token store needs a secret to derive its key from", { code: "GW_TOKEN_STORE_KEY" });
    const key = Buffer.from(hkdfSync("sha256", Buffer.from(secret, "utf8"), Buffer.from("gluework-token-store"), Buffer.from(context), 32));
    return new TokenCipher(key);
  }

  static fromKey(key: Buffer): TokenCipher {
    if (key.length !== 32) throw new PipelineError("a token store key has 32 bytes", { code: "GW_TOKEN_STORE_KEY" });
    return new TokenCipher(Buffer.from(key));
  }

  /** `aad` binds a sealed value to where it belongs (its key), so records cannot be swapped. */
  seal(plain: string, aad: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.key, iv);
    cipher.setAAD(Buffer.from(aad, "utf8"));
    const data = Buffer.concat([cipher.update(plain, "utf8"), cipher.final()]);
    return [VERSION, iv.toString("base64url"), cipher.getAuthTag().toString("base64url"), data.toString("base64url")].join(".");
  }

  open(sealed: string, aad: string): string {
    const [version, iv, tag, data] = sealed.split(".");
    if (version !== VERSION || !iv || !tag || data === undefined) throw new TokenDecryptError("the stored tokens are not in a format this version reads");
    try {
      const decipher = createDecipheriv("aes-256-gcm", this.key, Buffer.from(iv, "base64url"));
      decipher.setAAD(Buffer.from(aad, "utf8"));
      decipher.setAuthTag(Buffer.from(tag, "base64url"));
      return Buffer.concat([decipher.update(Buffer.from(data, "base64url")), decipher.final()]).toString("utf8");
    } catch (err) {
      throw new TokenDecryptError("the stored tokens cannot be decrypted with this key", err);
    }
  }
}

export class TokenDecryptError extends PipelineError {
  constructor(message: string, cause?: unknown) {
    super(message, { code: "GW_TOKEN_DECRYPT", status: "token store", cause });
  }
}

/** A short, non-reversible fingerprint of a secret, to notice that a user gave a new one. */
export function fingerprint(secret: string): string {
  return createHash("sha256").update("gluework-seed\0").update(secret).digest("base64url").slice(0, 22);
}
