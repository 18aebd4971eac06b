import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import type { DemoEnvironment } from "../../src/demo/environment";
import { demoFlows } from "../../src/demo/environment";

const FLOWS = path.join(__dirname, "..", "..", "..", "flows");

describe("the flows npm start deploys", () => {
  const env = { nodeRedUrl: "http://127.0.0.1:18999" } as unknown as DemoEnvironment;

  it("point every address of this Node-RED at the port it runs on, not at 1880", async () => {
    const flows = await demoFlows(FLOWS, env, new Map());
    const text = JSON.stringify(flows);
    assert.doesNotMatch(text, /127\.0\.0\.1:1880|localhost:1880/);
    const mediator = flows.find((n) => n.type === "http request" && String(n.url).includes("/api/setstatus"));
    assert.equal(mediator?.url, "http://127.0.0.1:18999/api/setstatus");
  });

  it("give every GoTo connection this Node-RED's callback as its redirect URI, so Authorize works in the demo", async () => {
    const { profile } = await import("../../src/demo/profiles/goto-credentials");
    const sandboxEnv = { ...env, sandbox: { url: "http://127.0.0.1:18780", goto: { oauth: { issueRefreshToken: () => "rt" } } }, secret: async (_n: string, make: () => string) => make() } as unknown as DemoEnvironment;
    const flows = await demoFlows(FLOWS, sandboxEnv, new Map([["goto-credentials", profile]]));
    const goto = flows.filter((n) => n.type === "goto-credentials");
    assert.ok(goto.length >= 2, "both GoTo examples have a connection");
    for (const n of goto) assert.equal(n.redirectUri, "http://127.0.0.1:18999/gluework/oauth/callback");
  });

  it("run the demo's first Teamleader sync at deploy, while the imported example waits for its schedule", async () => {
    const shipped = readFileSync(path.join(FLOWS, "teamleader-sync.json"), "utf8");
    assert.equal((JSON.parse(shipped) as Array<{ id: string; once?: boolean }>).find((n) => n.id === "tl-every-15")?.once, false);
    const flows = await demoFlows(FLOWS, env, new Map());
    assert.equal(flows.find((n) => n.id === "tl-every-15")?.once, true);
  });

  it("keep one ui-base, as the editor does, with the board's and the health page's pages on it", async () => {
    const flows = await demoFlows(FLOWS, env, new Map());
    const bases = flows.filter((n) => n.type === "ui-base");
    assert.equal(bases.length, 1);
    const pages = flows.filter((n) => n.type === "ui-page");
    assert.deepEqual(pages.map((n) => n.path).sort(), ["/board", "/operations"]);
    for (const n of pages) assert.equal(n.ui, bases[0]!.id);
  });

  it("leave the flows as shipped when Node-RED runs on its default address", async () => {
    const flows = await demoFlows(FLOWS, { nodeRedUrl: "http://127.0.0.1:1880" } as unknown as DemoEnvironment, new Map());
    const mediator = flows.find((n) => n.type === "http request" && String(n.url).includes("/api/setstatus"));
    assert.equal(mediator?.url, "http://127.0.0.1:1880/api/setstatus");
  });
});
