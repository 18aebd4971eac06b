import assert from "node:assert/strict";
import { AlertRule, alertMail, parseDuration, ruleFor } from "../../src/core/alerts";
import { registerSecret } from "../../src/core/redact";
import { textSections } from "../support/alert-mail";

describe("alert rules and mails", () => {
  const rule = (scope: AlertRule["scope"], match: string, to: string[] = []): AlertRule => ({ scope, match, to, graceMs: 0 });

  it("reads durations with their unit, seconds without one, and refuses anything else", () => {
    assert.equal(parseDuration("24h", "x"), 86_400_000);
    assert.equal(parseDuration("90m", "x"), 5_400_000);
    assert.equal(parseDuration("1.5s", "x"), 1500);
    assert.equal(parseDuration("2d", "x"), 172_800_000);
    assert.equal(parseDuration("30", "x"), 30_000);
    assert.equal(parseDuration(" ", "x"), undefined);
    assert.throws(() => parseDuration("soon", "the grace"), /the grace "soon" is not a duration/);
  });

  it("applies a node's own rule first, then its pipeline's, then the one for all", () => {
    const rules = [rule("all", ""), rule("pipeline", "call-logs", ["calls@example.com"]), rule("node", "n1", ["n1@example.com"])];
    assert.deepEqual(ruleFor(rules, "n1", "call-logs")!.to, ["n1@example.com"]);
    assert.deepEqual(ruleFor(rules, "n2", "call-logs")!.to, ["calls@example.com"]);
    assert.equal(ruleFor(rules, "n3", "provisioning")!.scope, "all");
    assert.equal(ruleFor([rule("pipeline", "call-logs")], "n3", "provisioning"), undefined);
  });

  it("writes a failure mail with the error, cause and fix, every registered secret masked", () => {
    registerSecret("s3cr3t-client-value-42");
    const at = new Date("2026-12-07T01:00:00Z");
    const mail = alertMail({
      kind: "failure",
      nodeId: "gw-calls",
      nodeName: "call logs",
      pipeline: "call-logs",
      run: { id: "7", node_name: "call logs", node_type: "goto-call-logs", pipeline: "call-logs", run_key: "2026-12-06", instance: "nr-1 pid 4", started_at: at, ended_at: at, outcome: "failure", error_message: "GoTo refused s3cr3t-client-value-42", error_code: "GW_AUTH", error_cause: "invalid_client", error_fix: "check the client secret" },
      now: at,
      lastSuccess: null,
      rule: rule("all", ""),
      timeZone: "Europe/Brussels",
    });
    assert.equal(mail.subject, "[call-logs] call logs failed");
    const rows = Object.fromEntries(textSections(mail.text).sections[0]!.rows);
    assert.deepEqual(rows, {
      Pipeline: "call-logs",
      Node: "call logs (gw-calls)",
      Run: "2026-12-06",
      Started: "2026-12-07 02:00:00 Europe/Brussels",
      Ended: "2026-12-07 02:00:00 Europe/Brussels",
      Instance: "nr-1 pid 4",
      Error: "GoTo refused [redacted]",
      Code: "GW_AUTH",
      Cause: "invalid_client",
      Fix: "check the client secret",
    });
    assert.ok(!mail.html.includes("s3cr3t"));
  });
});
