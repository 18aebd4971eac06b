import assert from "node:assert/strict";
import { MAX_MAIL_CHARS, composeMail } from "../../src/mail/compose";
import { webhook } from "../fixtures/monitoring";
import { htmlSections, textSections } from "../support/alert-mail";

const ZONE = "Europe/Brussels";
const compose = (body: unknown, timeZone = ZONE) => composeMail(body, "Monitoring message", { timeZone });
const link = (url: string) => `<a href="${url.replace(/&/g, "&#38;")}" style="color:#1a5fb4">${url.replace(/&/g, "&#38;")}</a>`;

const RUNBOOK = "https://runbooks.prometheus-operator.dev/runbooks/node/nodefilesystemspacefillingup";
const DB1_DESCRIPTION = [
  "Filesystem on /dev/sda1, mounted on /var, at db-1:9100 has only 3.12% available space left and is filling up fast.",
  "The WAL archive grew by 40 GiB in the last 6 hours.",
  "Check archive_command on the primary before deleting anything.",
].join("\n");

describe("rendering monitoring webhooks as mail", () => {
  describe("Alertmanager", () => {
    it("shows every annotation of a firing alert, multi-line text on its own lines, its labels, time in the configured zone and its link", () => {
      const body = webhook("alertmanager-firing");
      const mail = compose(body);
      assert.equal(mail.kind, "alertmanager");
      assert.equal(mail.subject, "[FIRING:2] NodeFilesystemSpaceFillingUp");
      const { title, sections, notes } = textSections(mail.text);
      assert.equal(title, "[FIRING:2] NodeFilesystemSpaceFillingUp");
      assert.deepEqual(notes, []);
      assert.deepEqual(sections[0]!.rows, [
        ["Sent by", "Alertmanager"],
        ["Receiver", "relay"],
        ["Group", "alertname=NodeFilesystemSpaceFillingUp"],
        ["Alertmanager", "http://alertmanager.example.com:9093"],
      ]);
      assert.equal(sections[1]!.heading, "FIRING · NodeFilesystemSpaceFillingUp · critical");
      assert.deepEqual(sections[1]!.rows, [
        ["Status", "FIRING"],
        ["Severity", "critical"],
        ["Alert", "NodeFilesystemSpaceFillingUp"],
        ["Summary", "Filesystem is predicted to run out of space within the next 4 hours."],
        ["Description", DB1_DESCRIPTION],
        ["Runbook", RUNBOOK],
        ["dashboard", "https://grafana.example.com/d/rYdddlPWk/node-exporter-full?var-instance=db-1:9100"],
        ["Labels", "device=/dev/sda1\nfstype=ext4\ninstance=db-1:9100\njob=node\nmountpoint=/var\nseverity=critical"],
        ["Started", "2026-11-22 10:58:30 +01:00 (Europe/Brussels)"],
        ["Alert link", body.alerts[0].generatorURL],
        ["Fingerprint", "6d7a3b5c9e0f1a2b"],
      ]);
      assert.equal(sections[2]!.heading, "FIRING · NodeFilesystemSpaceFillingUp · warning");
      assert.deepEqual(Object.fromEntries(sections[2]!.rows).Started, "2026-11-22 11:00:00 +01:00 (Europe/Brussels)");
      assert.equal(sections.length, 3);
      // The text keeps the description's lines, each below its label, none cut.
      assert.match(mail.text, /\nDescription:\n {2}Filesystem on \/dev\/sda1, .* filling up fast\.\n {2}The WAL archive grew by 40 GiB in the last 6 hours\.\n {2}Check archive_command/);
    });

    it("gives a firing notification an HTML part with a table per alert and clickable links", () => {
      const body = webhook("alertmanager-firing");
      const html = compose(body).html!;
      assert.match(html, /^<!DOCTYPE html><html><head><meta charset="utf-8">/);
      const { title, sections } = htmlSections(html);
      assert.equal(title, "[FIRING:2] NodeFilesystemSpaceFillingUp");
      assert.equal((html.match(/<table /g) ?? []).length, 3, "one table for the notification, one per alert");
      assert.deepEqual(
        sections.map((s) => s.heading),
        ["", "FIRING · NodeFilesystemSpaceFillingUp · critical", "FIRING · NodeFilesystemSpaceFillingUp · warning"],
      );
      const first = Object.fromEntries(sections[1]!.rows);
      assert.equal(first.Summary, "Filesystem is predicted to run out of space within the next 4 hours.");
      assert.equal(first.Description, DB1_DESCRIPTION.split("\n").join("<br>\n"));
      assert.equal(first.Runbook, link(RUNBOOK));
      assert.equal(first["Alert link"], link(body.alerts[0].generatorURL));
      assert.equal(first.Labels, "device=/dev/sda1<br>\nfstype=ext4<br>\ninstance=db-1:9100<br>\njob=node<br>\nmountpoint=/var<br>\nseverity=critical");
      assert.equal(first.Started, "2026-11-22 10:58:30 +01:00 (Europe/Brussels)");
      assert.equal(Object.fromEntries(sections[0]!.rows).Alertmanager, '<a href="http://alertmanager.example.com:9093/" style="color:#1a5fb4">http://alertmanager.example.com:9093</a>');
      assert.match(html, /<h3 style="[^"]*color:#c62828">FIRING · NodeFilesystemSpaceFillingUp · critical<\/h3>/, "a firing alert's heading in red");
    });

    it("shows when a resolved alert started and ended, in the configured zone", () => {
      const mail = compose(webhook("alertmanager-resolved"), "America/New_York");
      assert.equal(mail.subject, "[RESOLVED] NodeFilesystemSpaceFillingUp");
      const { sections } = textSections(mail.text);
      assert.equal(sections[1]!.heading, "RESOLVED · NodeFilesystemSpaceFillingUp · critical");
      const rows = Object.fromEntries(sections[1]!.rows);
      assert.equal(rows.Status, "RESOLVED");
      assert.equal(rows.Description, DB1_DESCRIPTION);
      assert.equal(rows.Started, "2026-11-22 04:58:30 -05:00 (America/New_York)");
      assert.equal(rows.Ended, "2026-11-22 06:42:00 -05:00 (America/New_York)");
      const html = htmlSections(compose(webhook("alertmanager-resolved")).html!);
      assert.equal(Object.fromEntries(html.sections[1]!.rows).Ended, "2026-11-22 12:42:00 +01:00 (Europe/Brussels)");
      assert.match(compose(webhook("alertmanager-resolved")).html!, /<h3 style="[^"]*color:#2e7d32">RESOLVED/, "a resolved alert's heading in green");
    });

    it("shows the message of kubernetes-mixin alerts that carry no summary or description, and the alerts left out", () => {
      const body = webhook("alertmanager-kube-pod-crashlooping");
      const mail = compose(body);
      assert.equal(mail.subject, "[FIRING:2] KubePodCrashLooping, KubeDeploymentReplicasMismatch");
      const { sections, notes } = textSections(mail.text);
      const crash = Object.fromEntries(sections[1]!.rows);
      assert.equal(sections[1]!.heading, "FIRING · KubePodCrashLooping · warning");
      assert.equal(crash.Message, "Pod payments/payments-api-7d9c5b8f4-x2x9q (api) is restarting 1.03 times / 5 minutes.");
      assert.equal(crash.Labels.split("\n").find((l: string) => l.startsWith("pod=")), "pod=payments-api-7d9c5b8f4-x2x9q");
      const mismatch = Object.fromEntries(sections[2]!.rows);
      assert.equal(mismatch.Message, "Deployment payments/payments-api has not matched the expected number of replicas for longer than 15 minutes.");
      assert.equal(mismatch.Runbook, "https://github.com/kubernetes-monitoring/kubernetes-mixin/tree/master/runbook.md#alert-name-kubedeploymentreplicasmismatch");
      assert.deepEqual(notes, ["2 more alerts left out by Alertmanager (its limit of alerts per message)."]);
      const html = htmlSections(mail.html!);
      assert.equal(Object.fromEntries(html.sections[1]!.rows).Message, "Pod payments/payments-api-7d9c5b8f4-x2x9q (api) is restarting 1.03 times / 5 minutes.");
      assert.match(mail.html!, /<p [^>]*>2 more alerts left out by Alertmanager/);
    });

    it("keeps a long description whole: limits apply to the whole mail, not to each field", () => {
      const body = webhook("alertmanager-firing");
      const long = Array.from({ length: 60 }, (_, i) => `line ${i}: ${"x".repeat(80)}`).join("\n");
      body.alerts[0].annotations.description = long;
      const rows = Object.fromEntries(textSections(compose(body).text).sections[1]!.rows);
      assert.equal(rows.Description, long);
      assert.equal(rows.Description.length > 5000, true);
    });

    it("cuts a notification larger than the mail's limit, and says so", () => {
      const body = webhook("alertmanager-firing");
      body.alerts[0].annotations.description = "y".repeat(MAX_MAIL_CHARS + 10);
      const mail = compose(body);
      const { sections, notes } = textSections(mail.text);
      assert.equal(sections.length, 2, "the second alert is left out");
      assert.ok(mail.text.length < MAX_MAIL_CHARS + 10_000);
      assert.match(notes.join("\n"), /characters were cut: a mail shows at most 1000000 characters/);
      assert.match(notes.join("\n"), /1 more alert is not shown/);
      assert.match(mail.html!, /1 more alert is not shown/);
    });
  });

  describe("Grafana", () => {
    it("shows the notification's title, state and message, and per alert its annotations, values and every link", () => {
      const body = webhook("grafana-firing");
      const mail = compose(body);
      assert.equal(mail.kind, "grafana");
      assert.equal(mail.subject, "[FIRING:2] High memory usage, High CPU usage");
      const { sections } = textSections(mail.text);
      assert.deepEqual(sections[0]!.rows, [
        ["Sent by", "Grafana"],
        ["Title", "[FIRING:2]  (Servers blue)"],
        ["State", "alerting"],
        ["Receiver", "relay"],
        ["Grafana", "https://play.grafana.org/"],
      ]);
      const alert = body.alerts[0];
      assert.equal(sections[1]!.heading, "FIRING · High memory usage");
      assert.deepEqual(sections[1]!.rows, [
        ["Status", "FIRING"],
        ["Alert", "High memory usage"],
        ["Summary", "This alert was triggered for zone us-1"],
        ["Description", "The system has high memory usage.\nTop consumer: java (PID 4211), 11.2 GiB resident."],
        ["Runbook", "https://myrunbook.com/runbook/1234"],
        ["Labels", "grafana_folder=Servers\nteam=blue\nzone=us-1"],
        ["Values", "B=44.23943737541908, C=1"],
        ["Value string", alert.valueString],
        ["Started", "2021-10-12 09:51:03 +02:00 (Europe/Brussels)"],
        ["Alert rule", alert.generatorURL],
        ["Silence", alert.silenceURL],
        ["Dashboard", alert.dashboardURL],
        ["Panel", alert.panelURL],
        ["Image", alert.imageURL],
        ["Fingerprint", "c6eadffa33fcdf37"],
      ]);
      const second = Object.fromEntries(sections[2]!.rows);
      assert.equal(second.Silence, body.alerts[1].silenceURL);
      assert.equal(second.Dashboard, undefined, "an empty link is left out");
      assert.equal(sections[3]!.heading, "Grafana's message");
      assert.deepEqual(sections[3]!.rows, [["Message", body.message.replace(/\n$/, "")]]);
    });

    it("makes Grafana's links clickable in the HTML part", () => {
      const body = webhook("grafana-firing");
      const { sections } = htmlSections(compose(body).html!);
      const alert = body.alerts[0];
      const rows = Object.fromEntries(sections[1]!.rows);
      assert.equal(rows["Alert rule"], link(alert.generatorURL));
      assert.equal(rows.Silence, link(alert.silenceURL));
      assert.equal(rows.Dashboard, link(alert.dashboardURL));
      assert.equal(rows.Panel, link(alert.panelURL));
      assert.equal(rows.Image, link(alert.imageURL));
      assert.equal(rows.Values, "B=44.23943737541908, C=1");
      assert.equal(rows["Value string"], alert.valueString.replace(/'/g, "&#39;"));
      const top = Object.fromEntries(sections[0]!.rows);
      assert.equal(top.Title, "[FIRING:2] &#160;(Servers blue)", "runs of spaces kept");
      assert.equal(top.State, "alerting");
      const message = Object.fromEntries(sections[3]!.rows).Message;
      assert.match(message, /^\*\*Firing\*\*<br>\n<br>\nValue: B=44\.23943737541908, C=1<br>\n/);
      assert.ok(message.includes(`Dashboard: ${link("https://play.grafana.org/d/000000012?orgId=1")}<br>`), "links inside the message are clickable too");
      assert.ok(message.includes("<br>\n&#160;- alertname = High memory usage<br>"), "the message's indentation is kept");
    });

    it("shows a resolved Grafana alert's end and state", () => {
      const { sections } = textSections(compose(webhook("grafana-resolved"), "UTC").text);
      const top = Object.fromEntries(sections[0]!.rows);
      assert.equal(top.State, "ok");
      assert.equal(top.Title, "[RESOLVED] High memory usage (Servers blue us-1)");
      const rows = Object.fromEntries(sections[1]!.rows);
      assert.equal(rows.Status, "RESOLVED");
      assert.equal(rows.Values, "B=21.0418, C=0");
      assert.equal(rows.Started, "2021-10-12 07:51:03 +00:00 (UTC)");
      assert.equal(rows.Ended, "2021-10-12 08:06:03 +00:00 (UTC)");
    });
  });

  describe("Uptime Kuma", () => {
    const cases: Array<[string, string, Array<[string, string]>]> = [
      ["uptime-kuma-http-down", "DOWN", [["Type", "http"], ["Address", "https://www.example.com/health"]]],
      ["uptime-kuma-http-up", "UP", [["Type", "http"], ["Address", "https://www.example.com/health"]]],
      ["uptime-kuma-ping-down", "DOWN", [["Type", "ping"], ["Address", "10.20.0.1"]]],
      ["uptime-kuma-ping-up", "UP", [["Type", "ping"], ["Address", "10.20.0.1"]]],
      ["uptime-kuma-port-down", "DOWN", [["Type", "port"], ["Address", "db-1.internal.example.com:5432"]]],
      ["uptime-kuma-port-up", "UP", [["Type", "port"], ["Address", "db-1.internal.example.com:5432"]]],
      ["uptime-kuma-dns-down", "DOWN", [["Type", "dns"], ["Address", "example.org"], ["Record type", "A"], ["Resolver", "1.1.1.1:53"], ["Last result", "Records: 93.184.215.14"]]],
      ["uptime-kuma-dns-up", "UP", [["Type", "dns"], ["Address", "example.org"], ["Record type", "A"], ["Resolver", "1.1.1.1:53"], ["Last result", "Records: 93.184.215.14"]]],
    ];
    for (const [name, status, target] of cases) {
      it(`shows the monitor of ${name} with its type and address as Kuma does, and the heartbeat's UTC time in the configured zone`, () => {
        const body = webhook(name);
        const mail = compose(body);
        assert.equal(mail.kind, "uptime-kuma");
        assert.equal(mail.subject, `[${status}] ${body.monitor.name}`);
        const { sections } = textSections(mail.text);
        assert.deepEqual(sections[0]!.rows, [["Sent by", "Uptime Kuma"], ["Message", body.msg]]);
        const rows = sections[1]!.rows;
        assert.equal(sections[1]!.heading, `${status} · ${body.monitor.name}`);
        assert.deepEqual(rows.slice(0, 2), [
          ["Status", status],
          ["Monitor", body.monitor.name],
        ]);
        assert.deepEqual(rows.slice(2, 2 + target.length), target);
        const map = Object.fromEntries(rows);
        assert.equal(map.Detail, body.heartbeat.msg);
        // Kuma's time is UTC; its local time on a clock in Brussels is the same instant.
        assert.equal(map.Time, `${body.heartbeat.localDateTime} +01:00 (Europe/Brussels)`);
        assert.equal(map["Time at Kuma"], undefined, "the same zone is not shown twice");
        assert.equal(map["Monitor ID"], String(body.monitor.id));
        assert.ok(!mail.text.includes("(https://)"));
        const html = Object.fromEntries(htmlSections(mail.html!).sections[1]!.rows);
        assert.equal(html.Address, target[1]![1].startsWith("https://") ? link(target[1]![1]) : target[1]![1]);
        assert.equal(html.Time, map.Time);
      });
    }

    it("shows a heartbeat's time in another configured zone, beside the time on Kuma's own clock", () => {
      const body = webhook("uptime-kuma-http-down");
      const rows = Object.fromEntries(textSections(compose(body, "UTC").text).sections[1]!.rows);
      assert.equal(rows.Time, "2026-11-22 12:00:00 +00:00 (UTC)");
      assert.equal(rows["Time at Kuma"], "2026-11-22 13:00:00 +01:00 (Europe/Brussels)");
      const tokyo = Object.fromEntries(textSections(compose(body, "Asia/Tokyo").text).sections[1]!.rows);
      assert.equal(tokyo.Time, "2026-11-22 21:00:00 +09:00 (Asia/Tokyo)");
    });

    it("keeps a multi-line ping result multi-line, and the monitor's description and tags", () => {
      const body = webhook("uptime-kuma-ping-down");
      const rows = Object.fromEntries(textSections(compose(body).text).sections[1]!.rows);
      assert.equal(rows.Detail, body.heartbeat.msg);
      assert.equal(rows.Detail.split("\n").length, 4);
      assert.equal(rows.Description, "Edge router in rack B2; the ISP circuit ID is on its label.");
      assert.equal(Object.fromEntries(textSections(compose(webhook("uptime-kuma-http-up")).text).sections[1]!.rows).Tags, "region: eu");
      assert.equal(Object.fromEntries(textSections(compose(webhook("uptime-kuma-http-up")).text).sections[1]!.rows)["Response time"], "182 ms");
    });

    it("keeps a line break in a monitor name from starting a line of the mail or of its header, and hides a URL's password", () => {
      const body = webhook("uptime-kuma-http-down");
      body.monitor.name = "Website\r\nBcc: attacker@example.net\u2028X-Forged: 1";
      body.monitor.url = "https://admin:s3cret@www.example.com/health";
      body.msg = `[${body.monitor.name}] [🔴 Down] timeout of 48000ms exceeded`;
      const mail = compose(body);
      assert.equal(mail.subject, "[DOWN] Website Bcc: attacker@example.net X-Forged: 1");
      assert.ok(!/[\r\n\u2028\u2029\u0085]/.test(mail.subject));
      const lines = mail.text.split("\n");
      assert.ok(!lines.some((l) => /^(Bcc|X-Forged):/.test(l)), mail.text);
      const rows = Object.fromEntries(textSections(mail.text).sections[1]!.rows);
      assert.equal(rows.Monitor, "Website Bcc: attacker@example.net X-Forged: 1");
      assert.equal(rows.Address, "https://admin:******@www.example.com/health");
      assert.ok(!mail.text.includes("s3cret") && !mail.html!.includes("s3cret"));
    });
  });

  describe("the HTML part", () => {
    it("escapes everything from the payload and links only http and https", () => {
      const body = webhook("alertmanager-firing");
      const alert = body.alerts[0];
      alert.labels.alertname = `<script>alert("x")</script>`;
      alert.annotations.summary = `<img src=x onerror="alert(1)"> & "quotes" 'too'`;
      alert.annotations.runbook_url = "javascript:alert(document.cookie)";
      alert.annotations.description = `see https://ok.example.com/a?b=1&c=<2> and data:text/html,<b>x</b>\n</td></tr></table><h1>forged</h1>`;
      alert.generatorURL = `https://prometheus.example.com/graph"><script>alert(2)</script>`;
      alert.labels.team = `"><iframe src=//evil>`;
      const html = compose(body).html!;
      const tags = new Set([...html.matchAll(/<\/?([a-zA-Z0-9!]+)/g)].map((m) => m[1]!.toLowerCase()));
      assert.deepEqual([...tags].sort(), ["!doctype", "a", "body", "br", "h2", "h3", "head", "html", "meta", "table", "td", "th", "title", "tr"]);
      assert.ok([...html.matchAll(/<a href="([^"]*)"/g)].every((m) => /^https?:\/\//.test(m[1]!)), "only http and https links");
      assert.ok(![...html.matchAll(/<[^>]*>/g)].some((m) => /\son[a-z]+=/i.test(m[0])), "no event handler in any tag");
      const rows = Object.fromEntries(htmlSections(html).sections[1]!.rows);
      assert.equal(rows.Summary, "&#60;img src=x onerror=&#34;alert(1)&#34;&#62; &#38; &#34;quotes&#34; &#39;too&#39;");
      assert.equal(rows.Runbook, "javascript:alert(document.cookie)");
      assert.equal(
        rows.Description,
        'see <a href="https://ok.example.com/a?b=1&#38;c=" style="color:#1a5fb4">https://ok.example.com/a?b=1&#38;c=</a>&#60;2&#62; and data:text/html,&#60;b&#62;x&#60;/b&#62;<br>\n&#60;/td&#62;&#60;/tr&#62;&#60;/table&#62;&#60;h1&#62;forged&#60;/h1&#62;',
      );
      assert.equal(rows["Alert link"], '<a href="https://prometheus.example.com/graph" style="color:#1a5fb4">https://prometheus.example.com/graph</a>&#34;&#62;&#60;script&#62;alert(2)&#60;/script&#62;');
      assert.match(htmlSections(html).sections[1]!.heading, /^FIRING · &#60;script&#62;alert\(&#34;x&#34;\)&#60;\/script&#62; · critical$/);
      assert.equal((html.match(/<table /g) ?? []).length, 3, "no table closed or opened by the payload");
    });
  });
});
