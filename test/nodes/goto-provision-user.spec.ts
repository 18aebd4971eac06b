import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import bcrypt from "bcryptjs";
import jwt from "jsonwebtoken";
import { request } from "undici";
import gotoCredentials from "../../src/nodes/goto-credentials";
import gotoProvisionUser from "../../src/nodes/goto-provision-user";
import jwtAuth from "../../src/nodes/jwt-auth";
import jwtAuthKey from "../../src/nodes/jwt-auth-key";
import { generateSecret, hmacSecret } from "../../src/auth/keys";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { SANDBOX_LICENSES as L } from "../../src/sandbox/goto-admin";
import { HttpNodeServer, coreNode } from "../support/http-nodes";
import { eventually, nodeRed } from "../support/node-red";

const helper = nodeRed();

describe("goto-provision-user", function () {
  this.timeout(120_000);
  const sandbox = new Sandbox({ goto: { rotateEvery: 1_000_000 } });
  const http = new HttpNodeServer();
  const secret = generateSecret();
  const nodes = [gotoCredentials, gotoProvisionUser, jwtAuth, jwtAuthKey, coreNode("network/21-httpin.js"), http.capture];
  let out: any[];
  let refused: any[];
  let caught: any[];

  before(async () => {
    await sandbox.listen();
    await http.listen();
  });
  after(async () => {
    await http.close();
    await sandbox.close();
  });
  beforeEach(() => {
    sandbox.goto.admin.reset();
    sandbox.goto.admin.rateLimit = 10;
    sandbox.goto.invalidTokenStatus = 401;
    sandbox.server.resetStats();
  });
  afterEach(() => helper.unload());

  /** A client of its own per load: the token store keys a connection by its client id. */
  function client(): { clientId: string; clientSecret: string; refreshToken: string } {
    const clientId = `goto-prov-${randomBytes(4).toString("hex")}`;
    sandbox.goto.oauth.registerClient(clientId, GOTO_DEMO_CLIENT.clientSecret);
    return { clientId, clientSecret: GOTO_DEMO_CLIENT.clientSecret, refreshToken: sandbox.goto.oauth.issueRefreshToken(clientId) };
  }

  async function load(settings: Record<string, unknown> = {}, creds = client(), rps = "10"): Promise<string> {
    const flow = [
      { id: "tab", type: "tab", label: "provisioning" },
      { id: "goto", type: "goto-credentials", authHost: `${sandbox.url}/goto/auth`, apiHost: `${sandbox.url}/goto/api`, store: "file", requestsPerSecond: rps },
      { id: "key", type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api", clockTolerance: "30" },
      { id: "prov", type: "goto-provision-user", z: "tab", x: 300, y: 100, goto: "goto", action: "item", welcomeEmail: true, ...settings, wires: [["out"], ["refused"]] },
      { id: "out", type: "helper", z: "tab", x: 500, y: 80, wires: [] },
      { id: "refused", type: "helper", z: "tab", x: 500, y: 120, wires: [] },
      { id: "catch", type: "catch", z: "tab", x: 100, y: 300, scope: ["prov"], uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 300, y: 300, wires: [] },
      // The endpoints of the example flow.
      { id: "in-prov", type: "http in", z: "tab", x: 100, y: 400, url: "/provision", method: "post", wires: [["verify-prov"]] },
      { id: "verify-prov", type: "jwt-auth", z: "tab", x: 300, y: 400, key: "key", mode: "verify", fromHeader: true, fromBearer: true, wires: [["http-prov"], ["res"]] },
      { id: "http-prov", type: "goto-provision-user", z: "tab", x: 500, y: 400, goto: "goto", action: "provision", welcomeEmail: true, wires: [["res"], ["res"]] },
      { id: "in-deprov", type: "http in", z: "tab", x: 100, y: 500, url: "/deprovision", method: "post", wires: [["verify-deprov"]] },
      { id: "verify-deprov", type: "jwt-auth", z: "tab", x: 300, y: 500, key: "key", mode: "verify", fromHeader: true, fromBearer: true, wires: [["http-deprov"], ["res"]] },
      { id: "http-deprov", type: "goto-provision-user", z: "tab", x: 500, y: 500, goto: "goto", action: "deprovision", deprovision: "delete", wires: [["res"], ["res"]] },
      { id: "res", type: "http response", z: "tab", x: 700, y: 450, wires: [] },
    ];
    await helper.load(nodes, flow, { goto: creds, key: { secret, users: `provisioner:${bcrypt.hashSync("not used here", 4)}` } });
    out = [];
    refused = [];
    caught = [];
    helper.getNode("out").on("input", (m: any) => out.push(m));
    helper.getNode("refused").on("input", (m: any) => refused.push(m));
    helper.getNode("caught").on("input", (m: any) => caught.push(m));
    return creds.clientId;
  }

  async function send(msg: Record<string, unknown>): Promise<void> {
    const before = out.length + refused.length;
    helper.getNode("prov").receive(msg);
    await eventually(() => out.length + refused.length > before, 90_000, "an answer from goto-provision-user");
  }

  const token = () => jwt.sign({ sub: "provisioner" }, hmacSecret(secret), { algorithm: "HS256", issuer: "node-red", audience: "api", expiresIn: 600 });
  async function post(path: string, body: unknown, auth = true) {
    const res = await request(`${http.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", ...(auth ? { authorization: `Bearer ${token()}` } : {}) },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    return { status: res.statusCode, body: (await res.body.json()) as any };
  }

  it("provisions a user from msg.payload and says what happened, keeping the rest of the message", async () => {
    await load();
    await send({ topic: "hr", payload: { action: "provision", email: "fien.peeters@example.com", firstName: "Fien", lastName: "Peeters", licenseKeys: [L.connectStandard] } });
    const [user] = sandbox.goto.admin.usersWithEmail("fien.peeters@example.com");
    assert.deepEqual(out[0].payload, { action: "provision", email: "fien.peeters@example.com", result: "created", userKey: user!.key, licenseKeys: [L.connectStandard] });
    assert.equal(out[0].statusCode, 200);
    assert.equal(out[0].topic, "hr");
    assert.deepEqual(sandbox.goto.admin.licensesOf(user!.key), [L.connectStandard]);
    assert.equal(caught.length, 0);
  });

  it("answers a seat GoTo refuses as seat exhaustion: 409 on the second output, the status and Catch say so", async () => {
    const pro = sandbox.goto.admin.license(L.meetingPro)!;
    pro.seats = pro.userKeys.length + 1;
    pro.invitedUserKeys = ["8214999999999999999"];
    await load();
    const statuses: Array<{ fill?: string; text?: string }> = [];
    helper.getNode("prov").on("call:status", (call: any) => statuses.push(call.args[0]));
    await send({ payload: { action: "provision", email: "seatless@example.com", firstName: "Seat", lastName: "Less", licenseKeys: [L.meetingPro] } });
    assert.equal(refused[0].statusCode, 409);
    assert.equal(refused[0].payload.code, "GW_GOTO_NO_FREE_SEAT");
    assert.match(refused[0].payload.error, /^no free seat: GoTo refused to create seatless@example.com.+SEATS_EXCEEDED/);
    await eventually(() => caught.length > 0, 10_000, "the error at Catch");
    assert.equal(caught[0].error.message.includes("another GoTo account"), false);
    assert.deepEqual(statuses.at(-1), { fill: "red", shape: "ring", text: "no free seat" });
  });

  it("refreshes an expired token GoTo answers with 403 and provisions, instead of asking for admin rights", async () => {
    sandbox.goto.invalidTokenStatus = 403;
    await load();
    await send({ payload: { action: "provision", email: "first@example.com", firstName: "A", lastName: "B", licenseKeys: [L.meetingPro] } });
    sandbox.goto.oauth.expireAccessTokens();
    await send({ payload: [1, 2].map((i) => ({ action: "provision", email: `later${i}@example.com`, firstName: "A", lastName: "B", licenseKeys: [L.meetingPro] })) });
    assert.deepEqual(out.at(-1).payload.map((r: any) => r.result), ["created", "created"]);
    assert.ok(sandbox.server.counter("goto api 403 token") >= 1, "GoTo answered the expired token with 403");
    assert.equal(caught.length, 0);
  });

  it("takes what the payload leaves out from its typed inputs, license keys of 26 digits exact", async () => {
    await load({
      action: "provision",
      email: "person.mail",
      emailType: "msg",
      firstName: "payload.given",
      firstNameType: "msg",
      lastName: "Janssens",
      lastNameType: "str",
      licenseKeys: `[${L.connectPremium}, "${L.meetingPro}"]`,
      licenseKeysType: "json",
      welcomeEmail: false,
    });
    await send({ person: { mail: "jan@example.com" }, payload: { given: "Jan" } });
    const [user] = sandbox.goto.admin.usersWithEmail("jan@example.com");
    assert.equal(out[0].payload.result, "created");
    assert.deepEqual(out[0].payload.licenseKeys, [L.connectPremium, L.meetingPro]);
    assert.deepEqual([user!.firstName, user!.lastName], ["Jan", "Janssens"]);
    assert.deepEqual(sandbox.goto.admin.licensesOf(user!.key), [L.meetingPro, L.connectPremium]);
    assert.deepEqual(sandbox.goto.admin.welcomeMails, []);
  });

  it("sends a user it cannot provision to the second output with 409, and tells Catch", async () => {
    await load();
    await send({ payload: { action: "provision", email: "late@example.com", firstName: "Late", lastName: "Comer", licenseKeys: [L.meetingBusiness] } });
    assert.equal(out.length, 0);
    assert.equal(refused[0].statusCode, 409);
    assert.deepEqual(refused[0].payload, {
      action: "provision",
      email: "late@example.com",
      result: "failed",
      error: `no free seat on license ${L.meetingBusiness} (GoTo Meeting Business) (all 3 seats are taken)`,
      code: "GW_GOTO_NO_FREE_SEAT",
    });
    await eventually(() => caught.length === 1, 5_000, "the error at the Catch node");
    assert.match(caught[0].error.message, /no free seat on license 7288486601101397003/);
    assert.equal(sandbox.goto.admin.usersWithEmail("late@example.com").length, 0);
  });

  it("provisions a batch of 500 with one bad item in the middle: the others are done, each item is reported", async () => {
    sandbox.goto.admin.rateLimit = null;
    sandbox.goto.admin.addLicense("Bulk", 600);
    const bulk = sandbox.goto.admin.licenses.at(-1)!.key;
    await load({}, client(), "1000");
    const items: unknown[] = Array.from({ length: 500 }, (_, i) => ({ action: "provision", email: `user${i}@bulk.example.com`, firstName: "Bulk", lastName: `User ${i}`, licenseKeys: [bulk] }));
    items[250] = { action: "provision", email: "user250@bulk.example.com", firstName: "Bulk", lastName: "User 250", licenseKeys: ["1234567890123456789"] };
    await send({ payload: items });
    const reports = out[0].payload as any[];
    assert.equal(out[0].statusCode, 207);
    assert.equal(reports.length, 500);
    assert.deepEqual(reports.map((r) => r.email), items.map((i: any) => i.email), "in the order given");
    assert.equal(reports.filter((r) => r.result === "created").length, 499);
    assert.equal(reports[250].result, "failed");
    assert.equal(reports[250].code, "GW_GOTO_UNKNOWN_LICENSE");
    assert.equal(sandbox.goto.admin.license(bulk)!.userKeys.length, 499);
    assert.equal(sandbox.goto.admin.usersWithEmail("user250@bulk.example.com").length, 0);
    assert.equal(sandbox.server.counter("goto admin requests"), 1 + 500 + 499 + 1, "the licenses, a search each, a creation each, and the licenses once more to confirm the creations");
    await eventually(() => caught.length === 1, 5_000, "one error at the Catch node");
    assert.match(caught[0].error.message, /1 of 500 items failed; the first: user250@bulk.example.com: unknown license key 1234567890123456789/);
    const shown = helper.getNode("prov").status.lastCall?.args[0];
    assert.deepEqual({ fill: shown?.fill, text: shown?.text }, { fill: "yellow", text: "1 of 500 failed" }, "a warning, not a failure: the batch was done");

    // Again: nothing to do.
    out = [];
    sandbox.server.resetStats();
    items[250] = { action: "deprovision", email: "user249@bulk.example.com" };
    await send({ payload: items });
    const again = out[0].payload as any[];
    assert.equal(out[0].statusCode, 200);
    assert.equal(again.filter((r) => r.result === "unchanged").length, 499);
    assert.equal(again[250].result, "deleted");
    assert.equal(again[249].result, "unchanged", "provisioned then removed by a later item: the address runs in order");
    assert.equal(sandbox.server.counter("goto admin users created"), 0);
  });

  it("refuses a payload it cannot read on the second output, and Node-RED goes on", async () => {
    await load();
    await send({ payload: "[{ not json" });
    assert.equal(refused[0].statusCode, 400);
    assert.match(refused[0].payload.error, /^msg.payload is not valid JSON/);
    await send({ payload: { action: "provision", email: "x@example.com", licenseKeys: [7288486601101397001] } });
    assert.equal(refused[1].statusCode, 400);
    assert.match(refused[1].payload.error, /lost digits as a JSON number: send license keys as strings/);
    assert.deepEqual([refused[1].payload.action, refused[1].payload.email, refused[1].payload.result], ["provision", "x@example.com", "failed"]);
  });

  it("says the authorizing user must be an admin when GoTo answers 403", async () => {
    const creds = client();
    sandbox.goto.admin.nonAdmins.add(creds.clientId);
    await load({}, creds);
    await send({ payload: { action: "deprovision", email: "emile.dupont@example.com" } });
    assert.equal(refused[0].statusCode, 503);
    assert.match(refused[0].payload.error, /must be an admin of the account .* scope identity:/);
    assert.equal(sandbox.goto.admin.usersWithEmail("emile.dupont@example.com").length, 1);
  });

  describe("POST /provision and /deprovision behind jwt-auth", () => {
    const body = { email: "Ana.Nunez+sales@example.com", firstName: "Ana María", lastName: "Núñez", licenseKeys: [L.connectStandard, L.connectPremium] };

    it("answers 401 without a token and changes nothing", async () => {
      await load();
      const res = await post("/provision", body, false);
      assert.equal(res.status, 401);
      assert.deepEqual(res.body, { message: "token missing" });
      assert.equal(sandbox.server.counter("goto admin requests"), 0);
    });

    it("creates the user, then answers unchanged for the same request, then deletes and reports absent", async () => {
      await load();
      const created = await post("/provision", body);
      assert.equal(created.status, 200);
      const [user] = sandbox.goto.admin.usersWithEmail(body.email);
      assert.deepEqual(created.body, { action: "provision", email: body.email, result: "created", userKey: user!.key, licenseKeys: body.licenseKeys });
      assert.equal((await post("/provision", body)).body.result, "unchanged");
      const deleted = await post("/deprovision", { email: body.email.toUpperCase() });
      assert.deepEqual(deleted.body, { action: "deprovision", email: body.email.toUpperCase(), result: "deleted", userKey: user!.key, licenseKeys: [] });
      assert.equal((await post("/deprovision", { email: body.email })).body.result, "absent");
    });

    it("answers 400 for an unknown license key and for an action the endpoint does not take", async () => {
      await load();
      const unknown = await post("/provision", { ...body, licenseKeys: ["1234567890123456789"] });
      assert.equal(unknown.status, 400);
      assert.equal(unknown.body.code, "GW_GOTO_UNKNOWN_LICENSE");
      const wrong = await post("/deprovision", { action: "provision", ...body });
      assert.equal(wrong.status, 400);
      assert.match(wrong.body.error, /this node only deprovisions/);
      assert.equal(sandbox.goto.admin.usersWithEmail(body.email).length, 0);
    });

    it("takes a batch in one request and answers each item", async () => {
      await load();
      const res = await post("/provision", [body, { ...body, email: "zoe.orsted@example.com" }, { email: "broken" }]);
      assert.equal(res.status, 207);
      assert.deepEqual(res.body.map((r: any) => r.result), ["created", "licensed", "failed"]);
      assert.match(res.body[2].error, /"broken" is not an e-mail address/);
    });
  });
});
