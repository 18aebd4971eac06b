import { Dispatcher, request } from "undici";
import type { TestDatabase } from "./pg";

/**
 * Login endpoints on /login and /login2, each with its own key node (same secret and users), whose
 * failed logins are counted in `db` when given, else in the Node-RED user directory.
 */
export function loginFlow(db: TestDatabase | undefined, secret: string, users: string): unknown[] {
  const key = (id: string) => ({ id, type: "jwt-auth-key", algorithm: "HS256", issuer: "node-red", audience: "api", clockTolerance: "30", database: db ? "db" : "", credentials: { secret, users } });
  const endpoint = (n: number, keyId: string) => [
    { id: `in${n}`, type: "http in", z: "tab", x: 100, y: 100 * n, url: n === 1 ? "/login" : "/login2", method: "post", wires: [[`login${n}`]] },
    { id: `login${n}`, type: "jwt-auth", z: "tab", x: 300, y: 100 * n, key: keyId, mode: "login", audience: "api", lifetime: "1h", wires: [[`res${n}`], [`res${n}`]] },
    { id: `res${n}`, type: "http response", z: "tab", x: 500, y: 100 * n, wires: [] },
  ];
  const database = db ? [{ id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: db.name, ssl: "disable", poolSize: "10", credentials: { url: db.url } }] : [];
  return [{ id: "tab", type: "tab", label: "login" }, ...database, key("key1"), key("key2"), ...endpoint(1, "key1"), ...endpoint(2, "key2")];
}

/** One login try at `url` (a Node-RED's address plus path): its HTTP status. */
export async function login(url: string, username: string, password: string, options: { headers?: Record<string, string>; dispatcher?: Dispatcher } = {}): Promise<number> {
  const res = await request(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...options.headers },
    body: JSON.stringify({ username, password }),
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
    dispatcher: options.dispatcher,
  });
  await res.body.dump();
  return res.statusCode;
}
