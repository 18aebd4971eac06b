import assert from "node:assert/strict";
import { request } from "undici";
import { Sandbox, TEAMLEADER_DEMO_CLIENT } from "../../src/sandbox";
import { TeamleaderData } from "../../src/sandbox/teamleader-data";

describe("Teamleader sandbox API", () => {
  const sandbox = new Sandbox({ teamleader: { volumes: { companies: 230, departments: 4 } } });
  let token: string;

  before(async () => {
    await sandbox.listen();
    token = await accessToken();
  });
  after(() => sandbox.close());
  beforeEach(() => {
    sandbox.teamleader.rateLimit.enabled = true;
    sandbox.teamleader.rateLimit.requests = 200;
  });

  async function accessToken(): Promise<string> {
    const res = await request(`${sandbox.url}/teamleader/auth/oauth2/access_token`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ ...{ client_id: TEAMLEADER_DEMO_CLIENT.clientId, client_secret: TEAMLEADER_DEMO_CLIENT.clientSecret }, grant_type: "refresh_token", refresh_token: sandbox.teamleader.oauth.issueRefreshToken(TEAMLEADER_DEMO_CLIENT.clientId) }),
    });
    return ((await res.body.json()) as { access_token: string }).access_token;
  }

  async function call(endpoint: string, body: unknown, bearer = token) {
    const res = await request(`${sandbox.url}/teamleader/api/${endpoint}`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${bearer}` },
      body: JSON.stringify(body),
    });
    return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as any };
  }

  it("generates the same records for the same seed and volume", () => {
    const a = new TeamleaderData("seed-1", { companies: 50 });
    const b = new TeamleaderData("seed-1", { companies: 50 });
    const query = { page: { size: 50, number: 1 } };
    assert.deepEqual(a.list("companies", query), b.list("companies", query));
    assert.notDeepEqual(new TeamleaderData("seed-2", { companies: 50 }).list("companies", query), a.list("companies", query));
    const names = a.list("companies", query).map((c) => String(c.name));
    assert.ok(names.some((n) => /[,"']/.test(n)) && names.some((n) => /[^\x00-\x7f]/.test(n)), "names with commas, quotes and non-ASCII");
  });

  it("pages companies.list 20 by default, up to 100, and refuses a bigger page", async () => {
    assert.equal((await call("companies.list", {})).body.data.length, 20);
    const last = await call("companies.list", { page: { size: 100, number: 3 } });
    assert.equal(last.body.data.length, 30);
    const refused = await call("companies.list", { page: { size: 500 } });
    assert.equal(refused.status, 400);
    assert.match(refused.body.errors[0].title, /page.size/);
  });

  it("answers departments.list whole, whatever page is asked for", async () => {
    const one = await call("departments.list", { page: { size: 2, number: 1 } });
    const two = await call("departments.list", { page: { size: 2, number: 2 } });
    assert.equal(one.body.data.length, 4);
    assert.deepEqual(one.body.data, two.body.data);
  });

  it("filters on updated_since with a +00:00 offset, refuses a Z, and refuses it where Teamleader has none", async () => {
    const changed = sandbox.teamleader.data.change("companies", 3);
    const since = new Date(Date.now() - 60_000).toISOString().replace(/\.\d{3}Z$/, "+00:00");
    const recent = await call("companies.list", { filter: { updated_since: since }, sort: [{ field: "updated_at", order: "asc" }] });
    assert.deepEqual(recent.body.data.map((c: { id: string }) => c.id).sort(), [...changed].sort());
    assert.equal((await call("companies.list", { filter: { updated_since: since.replace("+00:00", "Z") } })).status, 400);
    assert.equal((await call("users.list", { filter: { updated_since: since } })).status, 400);
  });

  it("adds custom fields to list items only with includes=custom_fields, and .info answers 404 for a deleted record", async () => {
    const plain = await call("companies.list", { page: { size: 1 } });
    assert.equal(plain.body.data[0].custom_fields, undefined);
    const withFields = await call("companies.list", { page: { size: 1 }, includes: "custom_fields" });
    assert.ok(Array.isArray(withFields.body.data[0].custom_fields));
    const [gone] = sandbox.teamleader.data.remove("companies", 1);
    const info = await call("companies.info", { id: gone });
    assert.equal(info.status, 404);
    assert.deepEqual(Object.keys(info.body.errors[0]).sort(), ["code", "status", "title"]);
  });

  it("allows 200 requests in a sliding minute with X-RateLimit-* headers, then answers 429", async () => {
    sandbox.teamleader.rateLimit.requests = 5;
    sandbox.teamleader.resetQuota();
    const fresh = await accessToken(); // another token of the same client: the window is per integration
    const answers = [await call("users.me", {})];
    for (let i = 0; i < 5; i++) answers.push(await call("users.me", {}, fresh));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200, 200, 429]);
    assert.deepEqual(answers.slice(0, 5).map((a) => a.headers["x-ratelimit-remaining"]), ["4", "3", "2", "1", "0"]);
    const last = answers[5]!;
    assert.equal(last.status, 429);
    assert.equal(last.headers["x-ratelimit-remaining"], "0");
    assert.equal(last.headers["x-ratelimit-limit"], "5");
    const reset = Date.parse(String(last.headers["x-ratelimit-reset"]).replace(/([+-]\d{2})(\d{2})$/, "$1:$2"));
    assert.ok(reset > Date.now() && reset <= Date.now() + 60_000, "the reset is an ISO timestamp within the minute");
    sandbox.teamleader.rateLimit.enabled = false;
    assert.equal((await call("users.me", {}, fresh)).status, 200, "the limit can be switched off");
  });

  it("answers an expired access token with 401 and Teamleader's error body", async () => {
    const fresh = await accessToken();
    sandbox.teamleader.oauth.expireAccessTokens();
    const res = await call("companies.list", {}, fresh);
    assert.equal(res.status, 401);
    assert.equal(res.body.errors[0].status, 401);
    assert.equal(res.body.errors[0].title, "Access token is invalid or has expired");
  });
});
