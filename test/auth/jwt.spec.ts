import assert from "node:assert/strict";
import { generateKeyPairSync, randomBytes } from "node:crypto";
import jwt from "jsonwebtoken";
import bcrypt from "bcryptjs";
import { ManualClock } from "../../src/core/clock";
import { Refusal, TokenAuthority, lifetimeSeconds, loginCredentials, tokenFrom } from "../../src/auth/jwt";
import { generateSecret, hmacSecret, signingKeys } from "../../src/auth/keys";
import { LoginThrottle, addressGroup } from "../../src/auth/throttle";
import { UserList } from "../../src/auth/users";

const users = new UserList(`promon:${bcrypt.hashSync("correct horse", 4)}\n# a comment\nops:${bcrypt.hashSync("battery staple", 4)}`);

function authority(clock = new ManualClock(1_700_000_000_000), secret = generateSecret()) {
  return new TokenAuthority({ keys: signingKeys("HS256", { secret }), users, issuer: "relay-test", audience: "api", clock, throttle: new LoginThrottle({}, clock) });
}

describe("JWT key, login and verify", () => {
  describe("the secret", () => {
    it("accepts 32 generated random bytes in base64url or hex", () => {
      assert.equal(hmacSecret(generateSecret()).length, 32);
      assert.equal(hmacSecret(randomBytes(32).toString("hex")).length, 32);
      assert.equal(hmacSecret(randomBytes(48).toString("base64")).length, 48);
    });

    it("refuses a short, a plain-text or a repetitive secret and says why", () => {
      assert.throws(() => hmacSecret(""), /no secret: use Generate/);
      assert.throws(() => hmacSecret("secret"), /the secret is 4 bytes; HS256 needs at least 32 random bytes/);
      assert.throws(() => hmacSecret(randomBytes(16).toString("hex")), /is 16 bytes/);
      assert.throws(() => hmacSecret("my very secret key for the relay, please!!"), /base64 or hex/);
      assert.throws(() => hmacSecret("mysecretkeymysecretkeymysecretkeymysecretkey"), /only 8 different characters/);
      assert.throws(() => hmacSecret("0123456789abcdef".repeat(4)), /repeats itself/);
    });

    it("takes RS256 and ES256 PEM keys and refuses a key of the wrong kind", () => {
      const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
      const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const pem = (k: any) => k.export({ type: k.type === "private" ? "pkcs8" : "spki", format: "pem" }) as string;
      assert.ok(signingKeys("RS256", { privateKey: pem(rsa.privateKey) }).signWith);
      assert.equal(signingKeys("ES256", { publicKey: pem(ec.publicKey) }).signWith, undefined);
      assert.throws(() => signingKeys("RS256", { privateKey: pem(ec.privateKey) }), /RS256 needs an RSA key/);
      assert.throws(() => signingKeys("ES256", { privateKey: pem(rsa.privateKey) }), /ES256 needs an EC key on the P-256 curve/);
      assert.throws(() => signingKeys("RS256", { privateKey: "not a key" }), /not a PEM key/);
    });
  });

  it("refuses a user list entry whose password is not a bcrypt hash", () => {
    assert.throws(() => new UserList("promon:12345"), /not a bcrypt hash/);
  });

  it("logs a user in and issues a token with sub, iat, exp, iss, aud and jti that verifies", async () => {
    const auth = authority();
    const issued = await auth.login({ username: "promon", password: "correct horse" }, "10.0.0.1", { lifetimeS: 3600 });
    assert.ok(!(issued instanceof Refusal));
    assert.equal(issued.expiresIn, 3600);
    const claims = jwt.decode(issued.token) as jwt.JwtPayload;
    assert.deepEqual(
      { sub: claims.sub, iss: claims.iss, aud: claims.aud, life: claims.exp! - claims.iat!, jti: typeof claims.jti },
      { sub: "promon", iss: "relay-test", aud: "api", life: 3600, jti: "string" },
    );
    const verified = auth.verify(issued.token);
    assert.ok(!(verified instanceof Refusal));
    assert.equal(verified.username, "promon");
  });

  describe("refuses, with a short reason", () => {
    const clock = new ManualClock(1_700_000_000_000);
    const secret = generateSecret();
    const auth = authority(clock, secret);
    const now = Math.floor(clock.now() / 1000);
    const key = hmacSecret(secret);
    const sign = (payload: object, options: jwt.SignOptions = {}, k: jwt.Secret = key) =>
      jwt.sign({ sub: "promon", iat: now, ...payload }, k, { issuer: "relay-test", audience: "api", ...options });
    const reason = (token: string | undefined, audience?: string) => {
      const result = auth.verify(token, { audience });
      assert.ok(result instanceof Refusal, "the token was accepted");
      return result.reason;
    };

    it("a missing token", () => assert.equal(reason(undefined), "token missing"));
    it("an unsigned token (alg none)", () => {
      const unsigned = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString("base64url")}.${Buffer.from(JSON.stringify({ sub: "promon", exp: now + 60, iss: "relay-test", aud: "api" })).toString("base64url")}.`;
      assert.equal(reason(unsigned), "invalid signature");
    });
    it("an expired token", () => assert.equal(reason(sign({ exp: now - 31 })), "token expired"));
    it("but not one that expired within the clock skew", () => assert.ok(!(auth.verify(sign({ exp: now - 10 })) instanceof Refusal)));
    it("a wrong signature", () => assert.equal(reason(sign({ exp: now + 60 }, {}, randomBytes(32))), "invalid signature"));
    it("a wrong audience", () => assert.equal(reason(sign({ exp: now + 60 }, { audience: "reports" })), "wrong audience"));
    it("a token for another audience than the node asks", () => assert.equal(reason(sign({ exp: now + 60 }), "reports"), "wrong audience"));
    it("a wrong issuer", () => assert.equal(reason(sign({ exp: now + 60 }, { issuer: "elsewhere" })), "wrong issuer"));
    it("a token without exp", () => assert.equal(reason(sign({})), "token has no expiry (exp)"));
    it("another algorithm, without naming either", () => assert.equal(reason(sign({ exp: now + 60 }, { algorithm: "HS512" })), "invalid signature"));
    it("a token for a user no longer in the list", () => assert.equal(reason(sign({ sub: "gone", exp: now + 60 })), "unknown user"));
    it("garbage", () => assert.equal(reason("not.a.token"), "malformed token"));
  });

  it("remembers a verified token, yet refuses it once expired, for another audience, or signed otherwise", async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const auth = authority(clock);
    const { token } = auth.issue("promon", { lifetimeS: 60 });
    const first = auth.verify(token);
    assert.ok(!(first instanceof Refusal));
    first.claims.sub = "changed by a flow"; // what a flow does to msg.user must not reach the next message
    const again = auth.verify(token);
    assert.ok(!(again instanceof Refusal));
    assert.equal(again.claims.sub, "promon");
    assert.equal((auth.verify(token, { audience: "reports" }) as Refusal).reason, "wrong audience");
    const forged = `${token.split(".").slice(0, 2).join(".")}.${Buffer.from("x".repeat(32)).toString("base64url")}`;
    assert.equal((auth.verify(forged) as Refusal).reason, "invalid signature");
    await clock.advance(60_000 + 29_000);
    assert.ok(!(auth.verify(token) instanceof Refusal), "within the clock skew");
    await clock.advance(1_000);
    assert.equal((auth.verify(token) as Refusal).reason, "token expired");
    assert.equal((auth.verify(token) as Refusal).reason, "token expired");
  });

  it("slows failed logins per user and address, never the same user at another address, and a good login clears its record", async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const auth = authority(clock);
    const wrong = (username: string, address: string) => auth.login({ username, password: "guess" }, address, { lifetimeS: 60 });
    const right = (address: string) => auth.login({ username: "promon", password: "correct horse" }, address, { lifetimeS: 60 });
    for (let i = 0; i < 4; i++) assert.equal(((await wrong("promon", "10.0.0.9")) as Refusal).reason, "wrong username or password");
    // The fourth failure makes this user wait at this address, and nothing else.
    const waiting = (await right("10.0.0.9")) as Refusal;
    assert.equal(waiting.status, 429);
    assert.equal(waiting.retryAfterS, 1);
    assert.ok(!((await right("10.0.0.7")) instanceof Refusal), "the same user at another address gets in");
    assert.equal(((await wrong("ops", "10.0.0.9")) as Refusal).status, 401, "another user at the same address is checked");
    await clock.advance(1000);
    assert.equal(((await wrong("promon", "10.0.0.9")) as Refusal).status, 401);
    assert.equal(((await wrong("promon", "10.0.0.9")) as Refusal).retryAfterS, 2, "each further failure doubles the wait");
    await clock.advance(2000);
    assert.ok(!((await right("10.0.0.9")) instanceof Refusal));
    assert.equal(await auth.throttle.retryAfterMs("promon", "10.0.0.9"), 0);
  });

  it("keeps every wait within the bound however long a guesser goes on", async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const auth = authority(clock);
    let longest = 0;
    for (let i = 0; i < 200; i++) {
      const answer = (await auth.login({ username: "promon", password: `guess ${i}` }, "10.0.0.9", { lifetimeS: 60 })) as Refusal;
      if (answer.status === 429) {
        longest = Math.max(longest, answer.retryAfterS!);
        await clock.advance(answer.retryAfterS! * 1000);
      }
    }
    assert.equal(longest, 60);
    await clock.advance(await auth.throttle.retryAfterMs("promon", "10.0.0.9"));
    assert.ok(!((await auth.login({ username: "promon", password: "correct horse" }, "10.0.0.9", { lifetimeS: 60 })) instanceof Refusal), "the wait ends, and the right password gets in");
  });

  it("gives a name that does not exist the same answers and waits as a listed one, and makes no one else wait", async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const auth = authority(clock);
    const answers = async (username: string, address: string) => {
      const seen: string[] = [];
      for (let i = 0; i < 8; i++) {
        const answer = (await auth.login({ username, password: `guess ${i}` }, address, { lifetimeS: 60 })) as Refusal;
        seen.push(`${answer.status} ${answer.reason}`);
        if (i === 5) await clock.advance(1000);
      }
      return seen;
    };
    assert.deepEqual(await answers("nobody", "10.0.0.1"), await answers("ops", "10.0.0.2"));
    for (let i = 0; i < 40; i++) await auth.login({ username: `name-${i}`, password: "guess" }, "10.0.0.1", { lifetimeS: 60 });
    assert.ok(!((await auth.login({ username: "promon", password: "correct horse" }, "10.0.0.1", { lifetimeS: 60 })) instanceof Refusal));
  });

  it("gives a user failing at many addresses no free tries at a new one, and longer first waits", async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const auth = authority(clock);
    for (let i = 0; i < 40; i++) await auth.login({ username: "promon", password: "guess" }, `192.0.2.${i}`, { lifetimeS: 60 });
    await auth.login({ username: "promon", password: "guess" }, "198.51.100.1", { lifetimeS: 60 });
    assert.equal(((await auth.login({ username: "promon", password: "guess" }, "198.51.100.1", { lifetimeS: 60 })) as Refusal).retryAfterS, 4);
    assert.ok(!((await auth.login({ username: "promon", password: "correct horse" }, "198.51.100.2", { lifetimeS: 60 })) instanceof Refusal), "a new address still gets in");
  });

  it("counts the addresses of one IPv6 /64 as one, and an IPv4 address written as IPv6 as itself", () => {
    assert.equal(addressGroup("2001:db8:1:2:aaaa::1"), addressGroup("2001:0db8:0001:0002:ffff:1:2:3"));
    assert.notEqual(addressGroup("2001:db8:1:2::1"), addressGroup("2001:db8:1:3::1"));
    assert.equal(addressGroup("::ffff:192.0.2.7"), "192.0.2.7");
    assert.equal(addressGroup("192.0.2.7"), "192.0.2.7");
  });

  it("reads the token from x-access-tokens, Bearer or a cookie, each only when enabled", () => {
    const req = { headers: { "x-access-tokens": "a", authorization: "Bearer b" }, cookies: { token: "c" } };
    assert.equal(tokenFrom(req, { header: true, bearer: true, cookie: "token" }), "a");
    assert.equal(tokenFrom(req, { header: false, bearer: true, cookie: "token" }), "b");
    assert.equal(tokenFrom(req, { header: false, bearer: false, cookie: "token" }), "c");
    assert.equal(tokenFrom(req, { header: false, bearer: false }), undefined);
  });

  it("reads login credentials from Basic or a body", () => {
    assert.deepEqual(loginCredentials({ headers: { authorization: "Basic cHJvbW9uOjEyMzQ1" } }, undefined), { username: "promon", password: "12345" });
    assert.deepEqual(loginCredentials({ headers: {} }, { username: "a", password: "b:c" }), { username: "a", password: "b:c" });
    assert.equal(loginCredentials({ headers: {} }, "text"), undefined);
  });

  it("reads token lifetimes in seconds, never as jsonwebtoken's bare milliseconds", () => {
    assert.equal(lifetimeSeconds("120"), 120);
    assert.equal(lifetimeSeconds("15m"), 900);
    assert.equal(lifetimeSeconds("7d"), 604_800);
    assert.throws(() => lifetimeSeconds("a week"), /not understood/);
  });
});
