import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { request } from "undici";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { SANDBOX_LICENSES as L } from "../../src/sandbox/goto-admin";

describe("sandbox: GoTo Admin API", () => {
  const sandbox = new Sandbox();
  before(() => sandbox.listen());
  after(() => sandbox.close());
  beforeEach(() => {
    sandbox.goto.admin.reset();
    sandbox.goto.admin.rateLimit = 10;
    sandbox.goto.invalidTokenStatus = 401;
  });

  const control = async (path: string, body: unknown) =>
    (await request(`${sandbox.url}${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) })).statusCode;

  /** An access token of a client of its own (the rate limit and admin rights are per client). */
  async function token(): Promise<{ clientId: string; token: string }> {
    const clientId = `goto-sbx-${randomBytes(4).toString("hex")}`;
    sandbox.goto.oauth.registerClient(clientId, GOTO_DEMO_CLIENT.clientSecret);
    const res = await request(`${sandbox.url}/goto/auth/oauth/token`, {
      method: "POST",
      headers: { authorization: `Basic ${Buffer.from(`${clientId}:${GOTO_DEMO_CLIENT.clientSecret}`).toString("base64")}`, "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: sandbox.goto.oauth.issueRefreshToken(clientId) }).toString(),
    });
    return { clientId, token: ((await res.body.json()) as { access_token: string }).access_token };
  }

  async function call(auth: string, method: string, rest: string, body?: unknown) {
    const res = await request(`${sandbox.url}/goto/api/admin/rest/v1/${rest.replace("{account}", `accounts/${sandbox.goto.accountKey}`)}`, {
      method: method as "GET",
      headers: { authorization: `Bearer ${auth}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
      body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
    });
    const text = await res.body.text();
    return { status: res.statusCode, text, json: text ? JSON.parse(text) : undefined };
  }

  it("writes keys as JSON integers with all their digits", async () => {
    const { token: t } = await token();
    const res = await call(t, "GET", "{account}/licenses");
    assert.match(res.text, /"key":78888886011013972886849029,/);
    assert.match(res.text, /"key":7288486601101397001,/);
    assert.deepEqual([res.json.fromIndex, res.json.toIndex, res.json.total], [0, 5, 5]);
  });

  it("filters users with GoTo's regular expressions, case-insensitive with (?i)", async () => {
    const { token: t } = await token();
    const find = async (filter: string) => (await call(t, "GET", `{account}/users?filter=${encodeURIComponent(filter)}`)).json.results.map((u: { email: string }) => u.email);
    assert.deepEqual(await find('(email="(?i).*DUPONT.*")'), ["emile.dupont@example.com"]);
    assert.deepEqual(await find('(email=".*DUPONT.*")'), []);
    assert.deepEqual(await find('(email="(?i)^support\\+desk@example\\.com$")'), ["support+desk@example.com"]);
    assert.deepEqual(await find('(firstName="Zoë") | (lastName="(?i)wójcik")'), ["zoe.orsted@example.com", "lukasz.wojcik@example.com"]);
    assert.equal((await call(t, "GET", `{account}/users?filter=${encodeURIComponent('(email="(?i)[")')}`)).status, 400);
  });

  it("answers 409 for an address in use, whatever its case, and creates with allOrNothing=false", async () => {
    const { token: t } = await token();
    const body = { users: [{ email: "EMILE.DUPONT@example.com", firstName: "É", lastName: "D" }], licenseKeys: [L.meetingPro] };
    const conflict = await call(t, "POST", "{account}/users", body);
    assert.equal(conflict.status, 409);
    assert.equal(conflict.json.errorCode, "CONFLICT");
    const lenient = await call(t, "POST", "{account}/users?allOrNothing=false", { ...body, users: [...body.users, { email: "new@example.com", firstName: "N", lastName: "U" }] });
    assert.equal(lenient.status, 200);
    assert.deepEqual(lenient.json.map((u: { email: string }) => u.email), ["EMILE.DUPONT@example.com", "new@example.com"]);
    assert.equal(sandbox.goto.admin.usersWithEmail("new@example.com").length, 1);
  });

  it("needs a license key or an admin role for a new user, and knows its license keys exactly", async () => {
    const { token: t } = await token();
    const user = { email: "x@example.com", firstName: "X", lastName: "Y" };
    assert.equal((await call(t, "POST", "{account}/users", { users: [user] })).status, 400);
    // A key written as a JS number would have lost its last digits: it is unknown then.
    const cut = await call(t, "POST", "{account}/users", `{"users":[${JSON.stringify(user)}],"licenseKeys":[${Number(L.connectPremium)}]}`);
    assert.equal(cut.status, 400);
    const exact = await call(t, "POST", "{account}/users", `{"users":[${JSON.stringify(user)}],"licenseKeys":[${L.connectPremium}]}`);
    assert.equal(exact.status, 200);
    assert.match(exact.text, /^\[\{"key":\d{19},"email":"x@example.com"\}\]$/);
  });

  it("answers 404 for an unknown account, user or license", async () => {
    const { token: t } = await token();
    assert.equal((await call(t, "GET", "accounts/1111111111111111111/users")).status, 404);
    assert.equal((await call(t, "DELETE", "{account}/users/8214000999999999999")).status, 404);
    const [emile] = sandbox.goto.admin.usersWithEmail("emile.dupont@example.com");
    assert.equal((await call(t, "POST", `{account}/licenses/1234567890123456789/users/${emile!.key}`)).status, 404);
    assert.equal((await call(t, "POST", `{account}/licenses/${L.meetingPro}/users/${emile!.key}`)).status, 204);
    assert.deepEqual(sandbox.goto.admin.licensesOf(emile!.key), [L.connectStandard, L.meetingPro]);
    assert.equal((await call(t, "DELETE", `{account}/licenses/${L.meetingPro},${L.connectStandard}/users/${emile!.key}`)).status, 204);
    assert.deepEqual(sandbox.goto.admin.licensesOf(emile!.key), []);
  });

  it("answers 403 on the account to a user who is no admin, while me still answers", async () => {
    const { clientId, token: t } = await token();
    sandbox.goto.admin.nonAdmins.add(clientId);
    const me = await call(t, "GET", "me");
    assert.equal(me.status, 200);
    assert.deepEqual(me.json.adminRoles, []);
    const users = await call(t, "GET", "{account}/users");
    assert.equal(users.status, 403);
    assert.equal((await call(t, "DELETE", `{account}/users/${sandbox.goto.admin.usersWithEmail("emile.dupont@example.com")[0]!.key}`)).status, 403);
    assert.equal(sandbox.goto.admin.usersWithEmail("emile.dupont@example.com").length, 1);
  });

  it("answers 409 SEATS_EXCEEDED for a license without a free seat, pending invitations counted", async () => {
    const { token: t } = await token();
    const pro = sandbox.goto.admin.license(L.meetingPro)!;
    pro.seats = pro.userKeys.length + 1;
    pro.invitedUserKeys = ["8214999999999999999"];
    const full = await call(t, "POST", "{account}/users", { users: [{ email: "n@example.com", firstName: "N", lastName: "U" }], licenseKeys: [L.meetingPro] });
    assert.deepEqual([full.status, full.json.errorCode], [409, "SEATS_EXCEEDED"]);
    const listed = (await call(t, "GET", "{account}/licenses")).json.results.find((l: { description: string }) => l.description === "GoTo Meeting Pro");
    assert.equal(listed.userCount, pro.userKeys.length, "userCount leaves the invitations out");
    assert.equal(listed.invitedUserKeys.length, 1);
    const [emile] = sandbox.goto.admin.usersWithEmail("emile.dupont@example.com");
    const assign = await call(t, "POST", `{account}/licenses/${L.meetingPro}/users/${emile!.key}`);
    assert.deepEqual([assign.status, assign.json.errorCode], [409, "SEATS_EXCEEDED"]);
  });

  it("answers 409 for an address another account holds, and refuses creations as told", async () => {
    const { token: t } = await token();
    sandbox.goto.admin.elsewhere.add("other@example.com");
    const user = { users: [{ email: "Other@example.com", firstName: "O", lastName: "T" }], licenseKeys: [L.meetingPro] };
    assert.equal((await call(t, "POST", "{account}/users", user)).status, 409);
    assert.deepEqual((await call(t, "POST", "{account}/users?allOrNothing=false", user)).json, [], "no key for another account's address");
    assert.equal(await control("/_sandbox/goto/admin", { refuseCreate: { status: 409, errorCode: "ACCOUNT_LOCKED", message: "Locked" } }), 204);
    const locked = await call(t, "POST", "{account}/users", { ...user, users: [{ email: "free@example.com", firstName: "F", lastName: "R" }] });
    assert.deepEqual([locked.status, locked.json], [409, { errorCode: "ACCOUNT_LOCKED", message: "Locked" }]);
    assert.equal(await control("/_sandbox/goto/admin", { refuseCreate: null }), 204);
  });

  it("answers an expired token with 403 AUTHN_INVALID_TOKEN when told to, else with 401", async () => {
    const { token: t } = await token();
    sandbox.goto.oauth.expireAccessTokens();
    assert.equal((await call(t, "GET", "{account}/licenses")).status, 401);
    assert.equal(await control("/_sandbox/goto/api", { invalidTokenStatus: 403 }), 204);
    const refused = await call(t, "GET", "{account}/licenses");
    assert.deepEqual([refused.status, refused.json.errorCode], [403, "AUTHN_INVALID_TOKEN"]);
    assert.equal(await control("/_sandbox/goto/api", { invalidTokenStatus: 500 }), 400);
  });

  it("answers 429 beyond 10 requests a second from one client", async () => {
    const { token: t } = await token();
    const statuses = await Promise.all(Array.from({ length: 14 }, () => call(t, "GET", "{account}/licenses").then((r) => r.status)));
    assert.equal(statuses.filter((s) => s === 200).length, 10);
    assert.equal(statuses.filter((s) => s === 429).length, 4);
  });

  it("keeps the account's users and licenses across a restart of npm start", async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), "gw-sbx-")), "sandbox.json");
    const first = new Sandbox();
    first.server.persistTo(file);
    const added = first.goto.admin.addUser({ email: "kept@example.com" });
    first.goto.admin.license(L.meetingPro)!.userKeys.push(added.key);
    await first.server.save();
    const second = new Sandbox();
    second.server.persistTo(file);
    assert.deepEqual(second.goto.admin.usersWithEmail("kept@example.com").map((u) => u.key), [added.key]);
    assert.deepEqual(second.goto.admin.licensesOf(added.key), [L.meetingPro]);
  });
});
