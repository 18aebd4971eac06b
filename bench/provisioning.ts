import gotoCredentials from "../src/nodes/goto-credentials";
import gotoProvisionUser from "../src/nodes/goto-provision-user";
import { GOTO_DEMO_CLIENT, Sandbox } from "../src/sandbox";
import { eventually, nodeRed } from "../test/support/node-red";
import type { Benchmark } from "./support";

const ONE_BY_ONE = 20;

/**
 * GoTo user provisioning through the goto-provision-user node in a Node-RED runtime, against the
 * sandbox's Admin API at GoTo's documented 10 requests per second (429 beyond) with the
 * goto-credentials node at its default rate: 1,000 new users as one batch, the same batch again
 * (every user unchanged), and a few users one message each, as an identity provider calling
 * POST /provision would send them.
 */
export const benchmark: Benchmark = {
  name: "provisioning",
  async run({ quick }) {
    const users = quick ? 50 : 1000;
    const oneByOne = quick ? 5 : ONE_BY_ONE;
    const sandbox = new Sandbox({ goto: { rotateEvery: 1_000_000 } });
    await sandbox.listen();
    const helper = nodeRed();
    try {
      const license = sandbox.goto.admin.addLicense("Bench seats", users + oneByOne + 10).key;
      const flow = [
        { id: "tab", type: "tab", label: "bench" },
        { id: "goto", type: "goto-credentials", authHost: `${sandbox.url}/goto/auth`, apiHost: `${sandbox.url}/goto/api`, store: "file", requestsPerSecond: "10" },
        { id: "prov", type: "goto-provision-user", z: "tab", x: 100, y: 100, goto: "goto", action: "provision", welcomeEmail: true, wires: [["out"], ["out"]] },
        { id: "out", type: "helper", z: "tab", x: 300, y: 100, wires: [] },
      ];
      await helper.load([gotoCredentials, gotoProvisionUser], flow, {
        goto: { ...GOTO_DEMO_CLIENT, refreshToken: sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId) },
      });
      const answers: any[] = [];
      helper.getNode("out").on("input", (m: any) => answers.push(m));
      const send = async (payload: unknown) => {
        const before = answers.length;
        helper.getNode("prov").receive({ payload });
        await eventually(() => answers.length > before, 900_000, "the provisioning answer");
        return answers[answers.length - 1];
      };
      // The token and the account key, fetched once, stay out of the counts.
      await send({ email: "warm.up@bench.example.com", firstName: "Warm", lastName: "Up", licenseKeys: [license] });

      const batch = Array.from({ length: users }, (_, i) => ({ email: `user${i}@bench.example.com`, firstName: "Bench", lastName: `User ${i}`, licenseKeys: [license] }));
      const run = async (payload: unknown, expected: string) => {
        sandbox.server.resetStats();
        const started = process.hrtime.bigint();
        const answer = await send(payload);
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        const reports = (Array.isArray(answer.payload) ? answer.payload : [answer.payload]) as Array<{ result: string }>;
        const wrong = reports.filter((r) => r.result !== expected);
        if (wrong.length) throw new Error(`${wrong.length} users were not ${expected}: ${JSON.stringify(wrong[0])}`);
        return { requests: sandbox.server.counter("goto admin requests"), throttled: sandbox.server.counter("goto admin 429"), seconds };
      };
      const created = await run(batch, "created");
      const unchanged = await run(batch, "unchanged");

      // One message per user, each reading the licenses itself.
      let singleNew = 0;
      let singleUnchanged = 0;
      for (let i = 0; i < oneByOne; i++) {
        const user = { email: `single${i}@bench.example.com`, firstName: "Single", lastName: `User ${i}`, licenseKeys: [license] };
        singleNew += (await run(user, "created")).requests;
        singleUnchanged += (await run(user, "unchanged")).requests;
      }

      return {
        users,
        requests_per_user: {
          new_users: round(created.requests / users),
          unchanged_users: round(unchanged.requests / users),
          new_user_one_message_each: round(singleNew / oneByOne),
          unchanged_user_one_message_each: round(singleUnchanged / oneByOne),
        },
        users_per_s: { new_users: round(users / created.seconds), unchanged_users: round(users / unchanged.seconds) },
        seconds: { new_users: round(created.seconds), unchanged_users: round(unchanged.seconds) },
        http_429: created.throttled + unchanged.throttled,
        notes: `goto-provision-user in a Node-RED 4 runtime (no editor) against the sandbox's Admin API, which answers 429 beyond 10 requests per second per client (GoTo's documented default); goto-credentials at its default 10 per second. new_users and unchanged_users: ${users} users in one message (a batch): the licenses are read once, then a search and a creation per new user, a search per unchanged one. one_message_each: ${oneByOne} users, one message each (as POST /provision receives them): licenses, search and creation, or licenses and search. http_429 counts the sandbox's 429s over both batches. The token and account key were fetched before the counts.`,
      };
    } finally {
      await helper.unload();
      await sandbox.close();
    }
  },
};

function round(n: number): number {
  return Number(n.toFixed(3));
}
