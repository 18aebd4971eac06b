import assert from "node:assert/strict";
import { composeMail } from "../../src/mail/compose";
import { alertmanagerFiring, grafanaFiring, uptimeKumaDown } from "../fixtures/monitoring";
import { textSections } from "../support/alert-mail";

describe("composing a mail from a monitoring body", () => {
  it("takes the original { message } as the body, under the node's subject", () => {
    assert.deepEqual(composeMail({ message: "disk almost full on db-1" }, "Monitoring message"), { kind: "message", subject: "Monitoring message", text: "disk almost full on db-1\n" });
  });

  it("uses a subject field when the sender gives one, and keeps other fields below the message", () => {
    const mail = composeMail({ subject: "Zabbix: PROBLEM", message: "CPU high", host: "web-1" }, "Monitoring message");
    assert.equal(mail.subject, "Zabbix: PROBLEM");
    assert.equal(mail.text, 'CPU high\n\n{\n    "host": "web-1"\n}\n');
  });

  it("makes one mail of an Alertmanager notification: status and names in the subject, a block per alert", () => {
    const mail = composeMail(alertmanagerFiring, "x", { timeZone: "UTC" });
    assert.equal(mail.kind, "alertmanager");
    assert.equal(mail.subject, "[FIRING:2] HighLatency, DiskFull");
    const { sections } = textSections(mail.text);
    assert.deepEqual(
      sections.map((s) => s.heading),
      ["", "FIRING · HighLatency · critical", "FIRING · DiskFull · warning"],
    );
    assert.deepEqual(Object.fromEntries(sections[1]!.rows).Summary, "p99 latency above 1 s");
    assert.deepEqual(Object.fromEntries(sections[2]!.rows).Description, "/var is 93% full");
    assert.deepEqual(Object.fromEntries(sections[0]!.rows).Alertmanager, "http://alertmanager:9093");
  });

  it("says RESOLVED with the start and end when an Alertmanager group resolves", () => {
    const resolved = { ...alertmanagerFiring, status: "resolved", alerts: [{ ...alertmanagerFiring.alerts[0]!, status: "resolved", endsAt: "2026-11-22T10:05:00Z" }] };
    const mail = composeMail(resolved, "x", { timeZone: "UTC" });
    assert.equal(mail.subject, "[RESOLVED] HighLatency");
    const rows = Object.fromEntries(textSections(mail.text).sections[1]!.rows);
    assert.equal(rows.Started, "2026-11-22 10:00:00 +00:00 (UTC)");
    assert.equal(rows.Ended, "2026-11-22 10:05:00 +00:00 (UTC)");
  });

  it("recognises Grafana, with the alert's values and dashboard link", () => {
    const mail = composeMail(grafanaFiring, "x");
    assert.equal(mail.kind, "grafana");
    assert.equal(mail.subject, "[FIRING:1] HighCPU");
    const rows = Object.fromEntries(textSections(mail.text).sections[1]!.rows);
    assert.equal(rows.Values, "A=97.5, C=1");
    assert.equal(rows.Dashboard, "https://grafana.example.com/d/abc");
  });

  it("takes Uptime Kuma's msg, monitor and heartbeat", () => {
    const mail = composeMail(uptimeKumaDown, "x", { timeZone: "Europe/Brussels" });
    assert.equal(mail.kind, "uptime-kuma");
    assert.equal(mail.subject, "[DOWN] Website");
    const { sections } = textSections(mail.text);
    assert.deepEqual(sections[0]!.rows, [["Sent by", "Uptime Kuma"], ["Message", "[Website] [🔴 Down] timeout of 48000ms exceeded"]]);
    const rows = Object.fromEntries(sections[1]!.rows);
    assert.equal(rows.Address, "https://www.example.com");
    assert.equal(rows.Time, "2026-11-22 13:00:00 +01:00 (Europe/Brussels)", "Kuma's time is UTC");
  });

  it("pretty-prints any other JSON as the original relay did", () => {
    const mail = composeMail({ host: "db-1", value: 93, tags: ["disk"] }, "Monitoring message");
    assert.equal(mail.kind, "json");
    assert.equal(mail.text, '{\n    "host": "db-1",\n    "value": 93,\n    "tags": [\n        "disk"\n    ]\n}\n');
  });

  it("keeps a subject on one line", () => {
    assert.equal(composeMail({ subject: "a\r\nBcc: someone@else", message: "m" }, "x").subject, "a Bcc: someone@else");
  });
});
