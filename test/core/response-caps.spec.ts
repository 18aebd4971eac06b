import assert from "node:assert/strict";
import http from "node:http";
import net from "node:net";
import { HttpClient, NetworkError, ResponseTooLargeError } from "../../src/core/http/client";
import { eventually } from "../support/node-red";

/** A server whose every answer is `respond`; it counts the connections it holds. */
async function server(respond: (res: http.ServerResponse) => void): Promise<{ url: string; open(): number; answered(): number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  let answered = 0;
  const srv = http.createServer((req, res) => {
    req.resume();
    res.on("error", () => undefined);
    answered++;
    respond(res);
  });
  srv.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`,
    open: () => sockets.size,
    answered: () => answered,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise<void>((resolve) => srv.close(() => resolve()));
    },
  };
}

/** Writes 1 MB chunks until the client goes away. */
function endless(res: http.ServerResponse): void {
  res.writeHead(200, { "content-type": "application/json" });
  const chunk = Buffer.alloc(1024 * 1024, "a");
  const more = () => {
    while (!res.destroyed) if (!res.write(chunk)) return void res.once("drain", more);
  };
  more();
}

describe("HTTP client answer limits", () => {
  it("aborts a request whose body passes the cap, with an error naming the cap, and closes the connection", async () => {
    const peer = await server(endless);
    const client = new HttpClient({ name: "GoTo", baseUrl: peer.url, maxResponseBytes: 256 * 1024 });
    try {
      const err = await client.request({ path: "/admin/rest/v1/me" }).then(() => undefined, (e: unknown) => e);
      assert.ok(err instanceof ResponseTooLargeError, String(err));
      assert.equal(err.message, "GoTo answered with more than 256 KB to GET /admin/rest/v1/me; is the host right?");
      assert.equal(err.code, "GW_HTTP_TOO_LARGE");
      assert.equal(peer.answered(), 1, "a too-large answer is not retried");
      await eventually(() => peer.open() === 0, 2000, "the connection to close after the cap");
    } finally {
      await client.close();
      await peer.close();
    }
  });

  it("takes a request's own cap over the client's", async () => {
    const peer = await server((res) => res.end(JSON.stringify({ data: "x".repeat(4096) })));
    const client = new HttpClient({ name: "Teamleader", baseUrl: peer.url });
    try {
      await assert.rejects(client.request({ path: "/users.me", maxResponseBytes: 1024 }), /Teamleader answered with more than 1 KB to GET \/users\.me/);
      const ok = await client.request<{ data: string }>({ path: "/users.me" });
      assert.equal(ok.body.data.length, 4096);
    } finally {
      await client.close();
      await peer.close();
    }
  });

  it("lets a client's signal abort a request whose body stalls, and closes the connection", async () => {
    const peer = await server((res) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.write('{"value":');
    });
    const controller = new AbortController();
    const client = new HttpClient({ name: "Microsoft Graph", baseUrl: peer.url, signal: controller.signal, timeoutMs: 60_000, maxRetries: 0 });
    try {
      const pending = client.request({ path: "/users" }).then(() => undefined, (e: unknown) => e);
      await eventually(() => peer.answered() === 1, 5000, "the request to reach the server");
      controller.abort(new Error("the test ran out of time"));
      const err = await pending;
      assert.ok(err instanceof NetworkError, String(err));
      await eventually(() => peer.open() === 0, 2000, "the connection to close after the abort");
    } finally {
      await client.close();
      await peer.close();
    }
  });
});
