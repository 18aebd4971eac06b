import assert from "node:assert/strict";
import type { CheckLine, ConnectionReport } from "../../src/core/check-report";
import { nodeRed } from "../support/node-red";

/** Presses Test connection as the dialog does: POST the node's own fields to the admin route. */
export async function testConnection(type: string, body: { id: string; config?: Record<string, unknown>; credentials?: Record<string, unknown>; options?: Record<string, unknown> }): Promise<ConnectionReport> {
  const res = await nodeRed().request().post(`/gluework/connection-test/${type}`).send(body).expect(200);
  return res.body as ConnectionReport;
}

/** The line of one check, or a failed assertion listing the lines there are. */
export function line(report: ConnectionReport, check: string | RegExp): CheckLine {
  const found = report.checks.find((l) => (typeof check === "string" ? l.check === check : check.test(l.check)));
  assert.ok(found, `no line "${check}" in ${JSON.stringify(report.checks, null, 1)}`);
  return found;
}

/** Asserts the outcome of one check (and that a failed one names a reason and a fix). */
export function expectLine(report: ConnectionReport, check: string | RegExp, outcome: CheckLine["outcome"], detail?: RegExp): CheckLine {
  const l = line(report, check);
  assert.equal(l.outcome, outcome, `${l.check}: ${JSON.stringify(l)}`);
  if (outcome === "failed") assert.ok(l.detail && l.fix, `a failed line says why and what to do: ${JSON.stringify(l)}`);
  if (detail) assert.match(`${l.detail ?? ""} ${l.fix ?? ""}`, detail);
  return l;
}
