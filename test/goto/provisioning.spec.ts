import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { GoToApis, isGoToTokenRejected } from "../../src/goto/api";
import { AdminAccessError, GoToAdminApi, emailFilter, parseGoToJson } from "../../src/goto/admin";
import { Outcome, ProvisionRequest, Provisioner, ProvisionerOptions, licenseKeyList, provisionRequest } from "../../src/goto/provisioning";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { SANDBOX_LICENSES as L, parseFilter } from "../../src/sandbox/goto-admin";
import { fileStore, manager } from "../support/tokens";

describe("GoTo provisioning", () => {
  const sandbox = new Sandbox({ goto: { rotateEvery: 1_000_000 } });
  let apis: GoToApis;
  let clientId: string;

  before(() => sandbox.listen());
  after(() => sandbox.close());
  beforeEach(async () => {
    sandbox.goto.admin.reset();
    sandbox.goto.admin.rateLimit = null;
    sandbox.goto.invalidTokenStatus = 401;
    sandbox.server.clearFaults();
    // A client of its own per test, so a test can make its user a non-admin.
    clientId = `goto-prov-${randomBytes(4).toString("hex")}`;
    sandbox.goto.oauth.registerClient(clientId, GOTO_DEMO_CLIENT.clientSecret);
    const tokens = manager({ provider: "goto", sandboxUrl: sandbox.url, store: fileStore(), clientId, clientSecret: GOTO_DEMO_CLIENT.clientSecret });
    await tokens.seed(sandbox.goto.oauth.issueRefreshToken(clientId));
    apis = new GoToApis({ auth: tokens, apiHost: `${sandbox.url}/goto/api`, requestsPerSecond: 1000 });
    sandbox.server.resetStats();
  });
  afterEach(() => apis.close());

  const admin = () => new GoToAdminApi(apis.api("admin"), sandbox.goto.accountKey);
  const provisioner = (options: Partial<ProvisionerOptions> = {}) => new Provisioner({ admin: admin(), ...options });
  const provision = (email: string, licenseKeys: string[], extra: Partial<ProvisionRequest> = {}): ProvisionRequest => ({ action: "provision", email, firstName: "Fien", lastName: "Peeters", licenseKeys, ...extra });
  const deprovision = (email: string, licenseKeys: string[] = []): ProvisionRequest => ({ action: "deprovision", email, licenseKeys });
  async function one(request: ProvisionRequest, options: Partial<ProvisionerOptions> = {}): Promise<Outcome> {
    const [outcome] = await provisioner(options).run([request]);
    return outcome!;
  }
  const report = (o: Outcome) => {
    if (!o.ok) throw new Error(`failed: ${o.error.message}`);
    return o.report;
  };
  const error = (o: Outcome) => {
    if (o.ok) throw new Error(`succeeded: ${JSON.stringify(o.report)}`);
    return o.error;
  };
  const changes = () => ["users created", "users deleted", "licenses assigned", "licenses removed"].map((c) => sandbox.server.counter(`goto admin ${c}`)).reduce((a, b) => a + b, 0);
  const holders = (key: string) => sandbox.goto.admin.license(key)!.userKeys;

  describe("the Admin API", () => {
    it("escapes an address for GoTo's regular-expression filter and anchors it", () => {
      assert.equal(emailFilter("a+b@x.com"), '(email="(?i)^a\\+b@x\\.com$")');
      assert.equal(emailFilter(" o'neil.(it)$@x.com "), '(email="(?i)^o\'neil\\.\\(it\\)\\$@x\\.com$")');
    });

    it("takes a 403 for a token problem only when its body says the token is invalid or expired", () => {
      assert.equal(isGoToTokenRejected(403, { errorCode: "AUTHN_INVALID_TOKEN", message: "Invalid or expired access token" }), true);
      assert.equal(isGoToTokenRejected(403, { int_err_code: "InvalidToken", msg: "Invalid token passed" }), true);
      assert.equal(isGoToTokenRejected(403, { errorCode: "FORBIDDEN", message: "The access token has expired" }), true);
      assert.equal(isGoToTokenRejected(403, { errorCode: "AUTHZ_INSUFFICIENT_SCOPE", message: "Missing scope identity:" }), false);
      assert.equal(isGoToTokenRejected(403, { errorCode: "FORBIDDEN", message: "The user is not an admin of this account" }), false);
      assert.equal(isGoToTokenRejected(400, { errorCode: "AUTHN_INVALID_TOKEN" }), false);
      assert.equal(isGoToTokenRejected(403, "Forbidden"), false);
    });

    it("reads keys of 19 and 26 digits exactly, as text", async () => {
      const licenses = await admin().licenses();
      assert.deepEqual(
        licenses.map((l) => l.key),
        [L.connectStandard, L.meetingPro, L.meetingBusiness, L.webinarLite, L.connectPremium],
      );
      const admins = await admin().usersByEmail("ADMIN@example.com");
      assert.deepEqual(admins.map((u) => u.key), ["1000000000000000001"]);
      assert.equal(parseGoToJson('{"key":78888886011013972886849029,"seats":5}') && (parseGoToJson('{"key":78888886011013972886849029}') as { key: string }).key, "78888886011013972886849029");
    });

    it("reads every page of a list", async () => {
      for (let i = 0; i < 7; i++) sandbox.goto.admin.addUser({ email: `paged${i}@x.com` });
      const small = new GoToAdminApi(apis.api("admin"), sandbox.goto.accountKey, { pageSize: 3 });
      const licenses = await small.licenses();
      assert.equal(licenses.length, 5);
      assert.equal(sandbox.server.counter("goto admin requests"), 2);
    });

    it("the sandbox's filter is a real regular expression: an unescaped dot matches any character", () => {
      const axb = { key: "1", email: "axb@x.com", firstName: "A", lastName: "B", locale: "en_US", adminRoles: [], createTime: "" };
      assert.equal(parseFilter('(email="(?i)^a.b@x.com$")')(axb), true);
      assert.equal(parseFilter(emailFilter("a.b@x.com"))(axb), false);
      assert.equal(parseFilter('(email="(?i).*XB@x.*") | (firstName="Z")')(axb), true);
    });
  });

  describe("provision", () => {
    it("creates a missing user with its license keys and GoTo's welcome mail", async () => {
      const r = report(await one(provision("fien.peeters@example.com", [L.connectStandard, L.connectPremium])));
      const [user] = sandbox.goto.admin.usersWithEmail("fien.peeters@example.com");
      assert.deepEqual(r, { action: "provision", email: "fien.peeters@example.com", result: "created", userKey: user!.key, licenseKeys: [L.connectStandard, L.connectPremium] });
      assert.match(r.userKey!, /^\d{19}$/);
      assert.deepEqual(sandbox.goto.admin.licensesOf(user!.key), [L.connectStandard, L.connectPremium]);
      assert.deepEqual(sandbox.goto.admin.welcomeMails, ["fien.peeters@example.com"]);
      // The licenses, the search, the creation, and the licenses again to tell a new user from one
      // GoTo's answer lists as existing: four requests for a new user (the last one per batch).
      assert.equal(sandbox.server.counter("goto admin requests"), 4);
    });

    it("sends no welcome mail when told not to", async () => {
      report(await one(provision("quiet@example.com", [L.meetingPro]), { welcomeEmail: false }));
      assert.equal(sandbox.goto.admin.usersWithEmail("quiet@example.com").length, 1);
      assert.deepEqual(sandbox.goto.admin.welcomeMails, []);
    });

    it("gives an existing user only the licenses it lacks", async () => {
      const [emile] = sandbox.goto.admin.usersWithEmail("emile.dupont@example.com");
      const r = report(await one(provision("Emile.Dupont@Example.com", [L.connectStandard, L.meetingPro])));
      assert.deepEqual(r, { action: "provision", email: "Emile.Dupont@Example.com", result: "licensed", userKey: emile!.key, licenseKeys: [L.meetingPro] });
      assert.deepEqual(sandbox.goto.admin.licensesOf(emile!.key), [L.connectStandard, L.meetingPro]);
      assert.equal(sandbox.server.counter("goto admin licenses assigned"), 1);
      assert.equal(sandbox.goto.admin.usersWithEmail("emile.dupont@example.com").length, 1);
    });

    it("changes nothing when the same message comes twice", async () => {
      const request = provision("twice@example.com", [L.connectStandard, L.meetingPro]);
      assert.equal(report(await one(request)).result, "created");
      const before = changes();
      sandbox.server.resetStats();
      const again = report(await one(request));
      assert.equal(again.result, "unchanged");
      assert.deepEqual(again.licenseKeys, []);
      assert.equal(changes(), 0, "nothing changed the second time");
      assert.ok(before > 0);
      assert.equal(sandbox.server.counter("goto admin requests"), 2, "the licenses and the search");
      assert.equal(sandbox.goto.admin.usersWithEmail("twice@example.com").length, 1);
    });

    it("finds an address with a plus whatever its case, and never takes a.b@ for axb@", async () => {
      sandbox.goto.admin.addUser({ email: "a+b@x.com" });
      sandbox.goto.admin.addUser({ email: "axb@x.com" });
      const plus = report(await one(provision("A+B@X.COM", [L.meetingPro])));
      assert.equal(plus.result, "licensed");
      assert.equal(plus.userKey, sandbox.goto.admin.usersWithEmail("a+b@x.com")[0]!.key);
      const dot = report(await one(provision("a.b@x.com", [L.meetingPro])));
      assert.equal(dot.result, "created");
      const axb = sandbox.goto.admin.usersWithEmail("axb@x.com")[0]!;
      assert.notEqual(dot.userKey, axb.key);
      assert.deepEqual(sandbox.goto.admin.licensesOf(axb.key), [], "axb@x.com was left alone");
    });

    it("refuses when several users have the address, and lists them", async () => {
      const first = sandbox.goto.admin.addUser({ email: "dup@x.com" });
      const second = sandbox.goto.admin.addUser({ email: "DUP@x.com" });
      const err = error(await one(provision("dup@x.com", [L.meetingPro])));
      assert.equal(err.code, "GW_GOTO_SEVERAL_USERS");
      assert.match(err.message, new RegExp(`2 GoTo users have the address dup@x.com: dup@x.com \\(user key ${first.key}\\), DUP@x.com \\(user key ${second.key}\\)`));
      assert.equal(changes(), 0);
    });

    it("refuses an unknown license key before anything changes, and names the account's licenses", async () => {
      const err = error(await one(provision("new@example.com", [L.meetingPro, "1234567890123456789"])));
      assert.equal(err.code, "GW_GOTO_UNKNOWN_LICENSE");
      assert.match(err.message, /^unknown license key 1234567890123456789: the account's licenses are 7288486601101397001 \(GoTo Connect Phone System Standard\)/);
      assert.equal(err.httpStatus, 400);
      assert.equal(sandbox.server.counter("goto admin user searches"), 0, "checked before looking the user up");
      assert.equal(changes(), 0);
    });

    it("refuses a license without a free seat before anything changes", async () => {
      const err = error(await one(provision("late@example.com", [L.meetingPro, L.meetingBusiness])));
      assert.equal(err.code, "GW_GOTO_NO_FREE_SEAT");
      assert.match(err.message, /no free seat on license 7288486601101397003 \(GoTo Meeting Business\) \(all 3 seats are taken\)/);
      assert.equal(sandbox.goto.admin.usersWithEmail("late@example.com").length, 0);
      assert.equal(changes(), 0);
      // A user who already holds the full license needs no seat.
      assert.equal(report(await one(provision("zoe.orsted@example.com", [L.meetingBusiness]))).result, "unchanged");
    });

    it("refuses a disabled license", async () => {
      const err = error(await one(provision("new@example.com", [L.webinarLite])));
      assert.equal(err.code, "GW_GOTO_LICENSE_DISABLED");
      assert.equal(changes(), 0);
    });

    it("counts seats across a batch: the users beyond the last seat fail, the others are created", async () => {
      sandbox.goto.admin.license(L.meetingBusiness)!.seats = 5;
      const outcomes = await provisioner().run(["s1", "s2", "s3", "s4"].map((n) => provision(`${n}@example.com`, [L.meetingBusiness])));
      assert.deepEqual(outcomes.map((o) => (o.ok ? o.report.result : o.error.code)).sort(), ["GW_GOTO_NO_FREE_SEAT", "GW_GOTO_NO_FREE_SEAT", "created", "created"]);
      assert.equal(holders(L.meetingBusiness).length, 5);
    });

    it("goes on with a user someone created between the search and the creation", async () => {
      sandbox.goto.admin.addUser({ email: "raced@example.com" });
      // The search misses it once, as if it had been made just after.
      sandbox.server.inject({ method: "GET", path: /\/users$/, status: 200, json: { results: [], fromIndex: 0, toIndex: 0, total: 0 } });
      const r = report(await one(provision("raced@example.com", [L.meetingPro])));
      assert.equal(r.result, "licensed");
      assert.equal(sandbox.server.counter("goto admin 409"), 1);
      assert.equal(sandbox.goto.admin.usersWithEmail("raced@example.com").length, 1);
    });

    describe("a creation GoTo answers with 200, listing users that existed beside those it created", () => {
      beforeEach(() => (sandbox.goto.admin.createConflicts = "listed"));

      it("counts a user the answer lists, one the search missed, as existing, and gives it the licenses it lacks", async () => {
        const missed = sandbox.goto.admin.addUser({ email: "missed@example.com" });
        sandbox.goto.admin.license(L.connectStandard)!.userKeys.push(missed.key);
        sandbox.server.inject({ method: "GET", path: /\/users$/, status: 200, json: { results: [], fromIndex: 0, toIndex: 0, total: 0 } });
        const r = report(await one(provision("missed@example.com", [L.connectStandard, L.meetingPro])));
        assert.deepEqual(r, { action: "provision", email: "missed@example.com", result: "licensed", userKey: missed.key, licenseKeys: [L.meetingPro] });
        assert.deepEqual(sandbox.goto.admin.licensesOf(missed.key), [L.connectStandard, L.meetingPro]);
        assert.equal(sandbox.goto.admin.usersWithEmail("missed@example.com").length, 1);
        assert.equal(sandbox.server.counter("goto admin users created"), 0);
      });

      it("still reports a user it made as created, holding its licenses", async () => {
        const r = report(await one(provision("made@example.com", [L.meetingPro])));
        const [made] = sandbox.goto.admin.usersWithEmail("made@example.com");
        assert.deepEqual(r, { action: "provision", email: "made@example.com", result: "created", userKey: made!.key, licenseKeys: [L.meetingPro] });
        assert.deepEqual(sandbox.goto.admin.licensesOf(made!.key), [L.meetingPro]);
      });

      it("tells a batch's new users from an existing one without licenses, reading the licenses once more after the batch", async () => {
        const missed = sandbox.goto.admin.addUser({ email: "missed2@example.com" });
        sandbox.server.inject({ method: "GET", path: /\/users$/, status: 200, json: { results: [], fromIndex: 0, toIndex: 0, total: 0 } });
        const emails = ["missed2@example.com", ...Array.from({ length: 7 }, (_, i) => `batch${i}@example.com`)];
        // One at a time, so the search that misses is the first address's.
        const outcomes = await provisioner({ concurrency: 1 }).run(emails.map((e) => provision(e, [L.meetingPro])));
        assert.deepEqual(outcomes.map((o) => report(o).result), ["licensed", ...emails.slice(1).map(() => "created")]);
        assert.deepEqual(sandbox.goto.admin.licensesOf(missed.key), [L.meetingPro]);
        // The licenses, 7 searches (the injected one is not counted), 8 creations, the licenses again, one assignment.
        assert.equal(sandbox.server.counter("goto admin requests"), 18);
      });

      it("says so when the answer lists the address without a user key and no user of this account has it", async () => {
        sandbox.goto.admin.elsewhere.add("taken@example.com");
        const err = error(await one(provision("taken@example.com", [L.meetingPro])));
        assert.equal(err.code, "GW_GOTO_ADDRESS_IN_USE");
        assert.match(err.message, /^GoTo refused to create taken@example.com, the address being in use \(200, taken@example.com listed without a user key/);
        assert.equal(sandbox.server.counter("goto admin users created"), 0);
      });
    });

    it("says so when the address is in use but by no user of this account", async () => {
      sandbox.goto.admin.elsewhere.add("elsewhere@example.com");
      const err = error(await one(provision("elsewhere@example.com", [L.meetingPro])));
      assert.equal(err.code, "GW_GOTO_ADDRESS_IN_USE");
      assert.equal(err.message, "GoTo refused to create elsewhere@example.com, the address being in use (409 CONFLICT: Email already in use: elsewhere@example.com), and no user of this account has it");
      assert.equal(err.httpStatus, 409);
    });

    it("reports GoTo's own refusal for want of a seat as seat exhaustion, not as an address in use", async () => {
      // Pending invitations hold seats that the license's userCount leaves out.
      const pro = sandbox.goto.admin.license(L.meetingPro)!;
      pro.seats = pro.userKeys.length + 1;
      pro.invitedUserKeys = ["8214999999999999999"];
      const err = error(await one(provision("seatless@example.com", [L.meetingPro])));
      assert.equal(err.code, "GW_GOTO_NO_FREE_SEAT");
      assert.match(err.message, /^no free seat: GoTo refused to create seatless@example.com, license 7288486601101397002 has no seat left \(409 SEATS_EXCEEDED: No seats left on license 7288486601101397002\)$/);
      assert.equal(err.httpStatus, 409);
      assert.equal(changes(), 0);
      assert.equal(sandbox.server.counter("goto admin user searches"), 1, "no second search for a user who is not there");
    });

    it("reports a seat refused when giving an existing user a license as seat exhaustion", async () => {
      const pro = sandbox.goto.admin.license(L.meetingPro)!;
      pro.seats = pro.userKeys.length + 1;
      pro.invitedUserKeys = ["8214999999999999999"];
      const err = error(await one(provision("emile.dupont@example.com", [L.meetingPro])));
      assert.equal(err.code, "GW_GOTO_NO_FREE_SEAT");
      assert.match(err.message, /GoTo refused to give user \d+ license 7288486601101397002, license 7288486601101397002 has no seat left \(409 SEATS_EXCEEDED/);
    });

    it("tells a refusal it does not know verbatim, with its status", async () => {
      sandbox.goto.admin.refuseCreate = { status: 409, errorCode: "ACCOUNT_LOCKED", message: "The account is locked for changes" };
      const err = error(await one(provision("locked@example.com", [L.meetingPro])));
      assert.equal(err.code, "GW_GOTO_REFUSED");
      assert.equal(err.message, "GoTo refused to create locked@example.com with 409 ACCOUNT_LOCKED: The account is locked for changes");
      assert.equal(err.status, "refused: ACCOUNT_LOCKED");
      assert.equal(err.httpStatus, 409);
      assert.equal(sandbox.server.counter("goto admin user searches"), 1, "not taken for an address in use");
    });

    it("needs a first and last name to create a user", async () => {
      const err = error(await one(provision("nameless@example.com", [L.meetingPro], { firstName: undefined })));
      assert.match(err.message, /nameless@example.com is not a GoTo user yet, and GoTo needs firstName and lastName/);
      assert.equal(changes(), 0);
    });
  });

  describe("deprovision", () => {
    it("deletes the user, then reports it absent", async () => {
      const [zoe] = sandbox.goto.admin.usersWithEmail("zoe.orsted@example.com");
      assert.deepEqual(report(await one(deprovision("Zoe.Orsted@example.com"))), { action: "deprovision", email: "Zoe.Orsted@example.com", result: "deleted", userKey: zoe!.key, licenseKeys: [] });
      assert.equal(sandbox.goto.admin.usersWithEmail("zoe.orsted@example.com").length, 0);
      assert.ok(!holders(L.meetingBusiness).includes(zoe!.key), "its seat is free again");
      sandbox.server.resetStats();
      assert.equal(report(await one(deprovision("zoe.orsted@example.com"))).result, "absent");
      assert.equal(changes(), 0);
      assert.equal(sandbox.server.counter("goto admin requests"), 1, "one search");
    });

    it("only takes the licenses away when set to, all of them or those named", async () => {
      const [zoe] = sandbox.goto.admin.usersWithEmail("zoe.orsted@example.com");
      const named = report(await one(deprovision("zoe.orsted@example.com", [L.meetingBusiness]), { deprovision: "unlicense" }));
      assert.deepEqual(named, { action: "deprovision", email: "zoe.orsted@example.com", result: "unlicensed", userKey: zoe!.key, licenseKeys: [L.meetingBusiness] });
      assert.deepEqual(sandbox.goto.admin.licensesOf(zoe!.key), [L.connectStandard]);
      const rest = report(await one(deprovision("zoe.orsted@example.com"), { deprovision: "unlicense" }));
      assert.deepEqual(rest.licenseKeys, [L.connectStandard]);
      assert.equal(report(await one(deprovision("zoe.orsted@example.com"), { deprovision: "unlicense" })).result, "unchanged");
      assert.equal(sandbox.goto.admin.usersWithEmail("zoe.orsted@example.com").length, 1, "the user stays");
    });

    it("refuses when several users have the address", async () => {
      sandbox.goto.admin.addUser({ email: "two@x.com" });
      sandbox.goto.admin.addUser({ email: "Two@X.com" });
      assert.equal(error(await one(deprovision("two@x.com"))).code, "GW_GOTO_SEVERAL_USERS");
      assert.equal(sandbox.goto.admin.usersWithEmail("two@x.com").length, 2);
    });
  });

  describe("a batch", () => {
    it("stops asking GoTo after it refuses a user who is no admin, and reports every item", async () => {
      sandbox.goto.admin.nonAdmins.add(clientId);
      const outcomes = await provisioner().run(["n1", "n2", "n3", "n4", "n5", "n6"].map((n) => provision(`${n}@example.com`, [L.meetingPro])));
      assert.equal(outcomes.length, 6);
      for (const o of outcomes) assert.ok(!o.ok);
      const first = error(outcomes[0]!);
      assert.ok(first instanceof AdminAccessError);
      assert.match(first.message, /must be an admin of the account/);
      assert.equal(sandbox.server.counter("goto admin 403"), 1, "one refusal, no more requests");
    });

    it("refreshes a token that GoTo answers with 403 AUTHN_INVALID_TOKEN once, and goes on", async () => {
      sandbox.goto.invalidTokenStatus = 403;
      report(await one(provision("before@example.com", [L.meetingPro])));
      sandbox.goto.oauth.expireAccessTokens();
      const refreshes = sandbox.server.counter("goto refresh");
      const outcomes = await provisioner().run(["t1", "t2", "t3"].map((n) => provision(`${n}@example.com`, [L.meetingPro])));
      assert.deepEqual(outcomes.map((o) => (o.ok ? o.report.result : o.error.message)), ["created", "created", "created"]);
      assert.ok(sandbox.server.counter("goto api 403 token") >= 1, "GoTo answered the expired token with 403");
      assert.equal(sandbox.server.counter("goto refresh") - refreshes, 1, "one refresh");
    });

    it("takes a token GoTo still refuses after one refresh for a token problem, not for missing rights", async () => {
      await admin().licenses(); // a first access token
      sandbox.server.inject({ method: "GET", path: /\/licenses$/, status: 403, json: { errorCode: "AUTHN_INVALID_TOKEN", message: "Invalid or expired access token" }, times: 2 });
      const refreshes = sandbox.server.counter("goto refresh");
      const err = error(await one(provision("x@example.com", [L.meetingPro])));
      assert.equal(err.code, "GW_GOTO_TOKEN_REFUSED");
      assert.match(err.message, /^GoTo refused the access token even after refreshing it \(GoTo answered 403 Forbidden to GET .+: AUTHN_INVALID_TOKEN: Invalid or expired access token\): authorize again in the goto-credentials node$/);
      assert.equal(sandbox.server.counter("goto refresh") - refreshes, 1, "one refresh, no more");
    });

    it("reports a bad account key in words", async () => {
      const wrong = new GoToAdminApi(apis.api("admin"), "1111111111111111111");
      const [o] = await new Provisioner({ admin: wrong }).run([provision("x@example.com", [L.meetingPro])]);
      assert.equal(error(o!).code, "GW_GOTO_UNKNOWN_ACCOUNT");
    });

    it("stays under GoTo's 10 requests per second with no 429", async function () {
      this.timeout(30_000);
      sandbox.goto.admin.rateLimit = 10;
      const limited = new GoToApis({ auth: (apis as any).options.auth, apiHost: `${sandbox.url}/goto/api` });
      try {
        const outcomes = await new Provisioner({ admin: new GoToAdminApi(limited.api("admin"), sandbox.goto.accountKey) }).run(
          Array.from({ length: 12 }, (_, i) => provision(`paced${i}@example.com`, [L.meetingPro])),
        );
        assert.ok(outcomes.every((o) => o.ok && o.report.result === "created"));
        // The licenses, 12 searches, 12 creations, and the licenses once more to confirm them.
        assert.equal(sandbox.server.counter("goto admin requests"), 26);
        assert.equal(sandbox.server.counter("goto admin 429"), 0);
      } finally {
        await limited.close();
      }
    });
  });

  describe("requests", () => {
    it("take each field from the item, else from the node's settings", () => {
      assert.deepEqual(provisionRequest({ email: " x@y.z " }, { action: "provision", firstName: "A", lastName: "B", licenseKeys: "7288486601101397001, 7288486601101397002" }), {
        action: "provision",
        email: "x@y.z",
        firstName: "A",
        lastName: "B",
        licenseKeys: ["7288486601101397001", "7288486601101397002"],
      });
    });

    it("refuse an action the node does not take, and a missing one", () => {
      assert.throws(() => provisionRequest({ action: "provision", email: "x@y.z", licenseKeys: ["1"] }, { action: "deprovision" }), /this node only deprovisions/);
      assert.throws(() => provisionRequest({ email: "x@y.z" }, { action: "item" }), /action is missing/);
    });

    it("refuse a license key that lost digits as a JSON number", () => {
      assert.throws(() => licenseKeyList([7288486601101397001]), /lost digits as a JSON number: send license keys as strings/);
      assert.deepEqual(licenseKeyList([12345, "67890", "67890"]), ["12345", "67890"]);
      assert.throws(() => licenseKeyList(["abc"]), /"abc" is not a license key/);
    });
  });
});
