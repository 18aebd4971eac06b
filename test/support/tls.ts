import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";

let made: { key: string; cert: string } | undefined;

/** A self-signed RSA-2048 certificate for 127.0.0.1/localhost, made once per run with the openssl CLI. */
export function selfSignedCertificate(): { key: string; cert: string } {
  if (made) return made;
  const dir = mkdtempSync(path.join(os.tmpdir(), "gw-tls-"));
  try {
    execFileSync("openssl", [
      "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "2",
      "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "-keyout", path.join(dir, "key.pem"), "-out", path.join(dir, "cert.pem"),
    ], { stdio: "ignore" });
    made = { key: readFileSync(path.join(dir, "key.pem"), "utf8"), cert: readFileSync(path.join(dir, "cert.pem"), "utf8") };
    return made;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
