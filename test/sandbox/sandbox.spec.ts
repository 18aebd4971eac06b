import assert from "node:assert/strict";
import { ConfidentialClientApplication } from "@azure/msal-node";
import { request } from "undici";
import { MICROSOFT_DEMO_APP, Sandbox } from "../../src/sandbox";

describe("sandbox", () => {
  const sandbox = new Sandbox();
  before(() => sandbox.listen());
  after(() => sandbox.close());

  function msal(secret = MICROSOFT_DEMO_APP.clientSecret) {
    return new ConfidentialClientApplication({
      auth: {
        clientId: MICROSOFT_DEMO_APP.clientId,
        clientSecret: secret,
        authority: `https://login.microsoftonline.com/${MICROSOFT_DEMO_APP.tenantId}`,
        authorityMetadata: JSON.stringify(sandbox.microsoft.metadata(MICROSOFT_DEMO_APP.tenantId)),
      },
    });
  }

  it("issues client-credential tokens to msal-node and lets msal cache them", async () => {
    const before = sandbox.server.counter("microsoft token issued");
    const app = msal();
    const first = await app.acquireTokenByClientCredential({ scopes: ["https://graph.microsoft.com/.default"] });
    const second = await app.acquireTokenByClientCredential({ scopes: ["https://graph.microsoft.com/.default"] });
    assert.ok(first?.accessToken.startsWith("eyJ"));
    assert.equal(second?.accessToken, first?.accessToken);
    assert.equal(second?.fromCache, true);
    assert.equal(sandbox.server.counter("microsoft token issued") - before, 1);
  });

  it("refuses a wrong client secret with Microsoft's invalid_client answer", async () => {
    await assert.rejects(msal("wrong").acquireTokenByClientCredential({ scopes: ["https://graph.microsoft.com/.default"] }), (err: { errorCode?: string; message: string }) => {
      assert.equal(err.errorCode, "invalid_client");
      assert.match(err.message, /AADSTS7000215/);
      return true;
    });
  });

  it("redirects an authorization request back with a code and the state, or with access_denied", async () => {
    const { clientId } = { clientId: "teamleader-demo-client" };
    const url = `${sandbox.url}/teamleader/auth/oauth2/authorize?client_id=${clientId}&response_type=code&redirect_uri=${encodeURIComponent("http://127.0.0.1:9/cb")}&state=abc`;
    const granted = await request(url);
    assert.equal(granted.statusCode, 302);
    const location = new URL(String(granted.headers.location));
    assert.match(location.searchParams.get("code") ?? "", /^teamleader-code-/);
    assert.equal(location.searchParams.get("state"), "abc");
    await granted.body.dump();
    sandbox.teamleader.oauth.denyNextAuthorization = true;
    const denied = await request(url);
    assert.equal(new URL(String(denied.headers.location)).searchParams.get("error"), "access_denied");
    await denied.body.dump();
  });

  it("answers injected faults once, then behaves again", async () => {
    await request(`${sandbox.url}/_sandbox/faults`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ path: "/goto/api/admin/rest/v1/me", status: 503, times: 1 }),
    }).then((r) => r.body.dump());
    const faulted = await request(`${sandbox.url}/goto/api/admin/rest/v1/me`);
    assert.equal(faulted.statusCode, 503);
    await faulted.body.dump();
    const normal = await request(`${sandbox.url}/goto/api/admin/rest/v1/me`);
    assert.equal(normal.statusCode, 401); // no token: GoTo's own answer
    await normal.body.dump();
  });

  it("revokes a Teamleader refresh token once used and answers its reuse as Teamleader does", async () => {
    const { clientId, clientSecret } = { clientId: "teamleader-demo-client", clientSecret: "teamleader-demo-secret-0123456789" };
    const refresh = sandbox.teamleader.oauth.issueRefreshToken(clientId);
    const post = () =>
      request(`${sandbox.url}/teamleader/auth/oauth2/access_token`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ client_id: clientId, client_secret: clientSecret, grant_type: "refresh_token", refresh_token: refresh }),
      });
    const first = await post();
    const body = (await first.body.json()) as { refresh_token: string };
    assert.ok(body.refresh_token && body.refresh_token !== refresh);
    const again = await post();
    assert.equal(again.statusCode, 400);
    assert.deepEqual(await again.body.json(), {
      errors: [{ code: 8, title: "The refresh token is invalid.", status: 400, meta: { type: "invalid_request", hint: "Token has been revoked" } }],
    });
  });
});
