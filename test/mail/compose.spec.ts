import assert from "node:assert/strict";
import { composeMail } from "../../src/mail/compose";
import { alertmanagerFiring, grafanaFiring, uptimeKumaDown } from "../fixtures/monitoring";

describe("composing a mail from a monitoring body", () => {
  it("takes the original { message } as the body, under the node's subject", () => {
    assert.deepEqual(composeMail({ message: "disk almost full on db-1" }, "Monitoring message"), { kind: "message", subject: "Monitoring message", text: "disk almost full on db-1\n" });
  });

  it("uses a subject field when the sender gives one, and keeps other fields below the message", () => {
    const mail = composeMail({ subject: "Zabbix: PROBLEM", message: "CPU high", host: "web-1" }, "Monitoring message");
    assert.equal(mail.subject, "Zabbix: PROBLEM");
    assert.equal(mail.text, 'CPU high\n\n{\n    "host": "web-1"\n}\n');
  });

  it("makes one mail of an Alertmanager notification: status and names in the subject, one line per alert", () => {
    const mail = composeMail(alertmanagerFiring, "x");
    assert.equal(mail.kind, "alertmanager");
    assert.equal(mail.subject, "[FIRING:2] HighLatency, DiskFull");
    const lines = mail.text.split("\n");
    assert.equal(lines[0], "FIRING HighLatency instance=web-1:9100 severity=critical — p99 latency above 1 s (since 2026-11-22 10:00Z)");
    assert.equal(lines[1], "FIRING DiskFull instance=db-1:9100 severity=warning — /var is 93% full (since 2026-11-22 09:58:30Z)");
    assert.equal(lines[2], "");
    assert.match(lines[3]!, /^Alertmanager \(receiver relay\): http:\/\/alertmanager:9093$/);
  });

  it("says RESOLVED with the time span when an Alertmanager group resolves", () => {
    const resolved = { ...alertmanagerFiring, status: "resolved", alerts: [{ ...alertmanagerFiring.alerts[0]!, status: "resolved", endsAt: "2026-11-22T10:05:00Z" }] };
    const mail = composeMail(resolved, "x");
    assert.equal(mail.subject, "[RESOLVED] HighLatency");
    assert.match(mail.text, /^RESOLVED HighLatency .* \(2026-11-22 10:00Z → 2026-11-22 10:05Z\)$/m);
  });

  it("recognises Grafana, with the alert's values and dashboard link", () => {
    const mail = composeMail(grafanaFiring, "x");
    assert.equal(mail.kind, "grafana");
    assert.equal(mail.subject, "[FIRING:1] HighCPU");
    assert.match(mail.text, /^FIRING HighCPU grafana_folder=Servers instance=web-2 — CPU above 90% \[A=97\.5, C=1\] \(since 2026-11-22 11:00Z\)$/m);
    assert.match(mail.text, /^HighCPU: https:\/\/grafana\.example\.com\/d\/abc$/m);
  });

  it("takes Uptime Kuma's msg, monitor and heartbeat", () => {
    const mail = composeMail(uptimeKumaDown, "x");
    assert.equal(mail.kind, "uptime-kuma");
    assert.equal(mail.subject, "[DOWN] Website");
    assert.equal(mail.text, "[Website] [🔴 Down] timeout of 48000ms exceeded\n\nMonitor: Website (https://www.example.com)\nTime: 2026-11-22 12:00:00 (Europe/Brussels)\nDetail: timeout of 48000ms exceeded\n");
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
