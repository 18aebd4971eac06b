import assert from "node:assert/strict";
import { carriedList, migrateConfig } from "../../src/core/node/migrate";
import { redact, describeUrl, registerSecret } from "../../src/core/redact";

describe("node config versions", () => {
  const steps = [
    { version: 2, up: (c: Record<string, unknown>) => ({ ...c, timeZone: c.tz ?? "UTC" }) },
    { version: 3, up: (c: Record<string, unknown>) => ({ ...c, days: Number(c.days) }) },
  ];

  it("treats a config without a version as version 1 and runs every step in order", () => {
    assert.deepEqual(migrateConfig({ tz: "Europe/Brussels", days: "7" }, steps), { tz: "Europe/Brussels", timeZone: "Europe/Brussels", days: 7, version: 3 });
  });

  it("runs only the steps a config has not had, and never changes its input", () => {
    const saved = { version: 2, timeZone: "UTC", days: "1" };
    assert.deepEqual(migrateConfig(saved, steps), { version: 3, timeZone: "UTC", days: 1 });
    assert.equal(saved.days, "1");
  });

  it("stamps version 1 on a first-release config with no steps", () => {
    assert.deepEqual(migrateConfig({ a: 1 }, []), { a: 1, version: 1 });
  });

  it("carries a renamed list over when the new field is missing or left empty by an editor that dropped the old one", () => {
    assert.equal(carriedList(undefined, "Burt\nJimmy"), "Burt\nJimmy");
    assert.equal(carriedList("", "Burt\nJimmy"), "Burt\nJimmy");
    assert.equal(carriedList("", ["Burt", "Jimmy"]), "Burt\nJimmy");
    assert.equal(carriedList("Ann", "Burt"), "Ann", "a list set under the new name wins");
    assert.equal(carriedList("", [{ id: "n1" }]), "", "the editor's own users array is no list of names");
    assert.equal(carriedList(undefined, undefined), "");
  });
});

describe("redaction", () => {
  it("masks registered secrets, bearer tokens, query and JSON secrets, URL passwords and JWTs", () => {
    registerSecret("my-client-secret-1");
    const text = [
      "secret my-client-secret-1",
      "Authorization: Bearer abcdef123456",
      "https://x.test/cb?code=abc123&state=ok",
      '{"refresh_token":"rt-value","code":"Request_ResourceNotFound"}',
      "postgres://user:hunter2@db:5432/x",
      "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
    ].join("\n");
    const out = redact(text);
    for (const leaked of ["my-client-secret-1", "abcdef123456", "abc123", "rt-value", "hunter2", "eyJhbGciOiJIUzI1NiJ9"]) {
      assert.ok(!out.includes(leaked), `${leaked} leaked in:\n${out}`);
    }
    assert.match(out, /Request_ResourceNotFound/, "error codes stay readable");
    assert.match(out, /state=ok/);
  });

  it("describes a URL for a log line without its query values", () => {
    assert.equal(describeUrl("https://api.test/v1/x?accountKey=123&page=2"), "https://api.test/v1/x?accountKey=…&page=…");
  });
});
