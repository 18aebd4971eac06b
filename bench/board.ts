import { readFileSync } from "node:fs";
import path from "node:path";
import { Socket, io } from "socket.io-client";
import { generateSecret } from "../src/auth/keys";
import { Azurite } from "../src/sandbox/azurite";
import { createTestDatabase } from "../test/support/pg";
import { startNodeRed } from "../test/support/node-red-process";
import type { Benchmark } from "./support";

interface Snapshot {
  rows: Array<{ main: string; sub: string; occupants: Array<{ user: string }> }>;
}

/**
 * The support board with 50 dashboards connected: the time from a tick (a dashboard's action) to
 * the new state's arrival at every dashboard, through a real Node-RED process, its PostgreSQL
 * database and Dashboard 2.0's socket.io.
 */
export const benchmark: Benchmark = {
  name: "board",
  async run({ quick }) {
    const clients = quick ? 10 : 50;
    const ticks = quick ? 10 : 100;
    const db = await createTestDatabase("gw_bench");
    // The whole flow runs as deployed, the weekly audit into Azurite included.
    const azurite = new Azurite();
    await azurite.start();
    const red = await startNodeRed();
    const sockets: Socket[] = [];
    try {
      const settings: Record<string, Record<string, unknown>> = {
        "postgres-database": { mode: "server", credentials: { url: db.url } },
        "azure-storage-account": { auth: "connection-string", credentials: { connectionString: azurite.connectionString } },
        "jwt-auth-key": { credentials: { secret: generateSecret(), users: "" } },
        "connection-board": { policy: "shared", maxPerRow: "5" },
      };
      const flow = (JSON.parse(readFileSync(path.join(__dirname, "..", "..", "flows", "support-board.json"), "utf8")) as Array<Record<string, unknown>>).map((n) => ({
        ...n,
        ...settings[String(n.type)],
      }));
      const widget = String(flow.find((n) => n.type === "ui-template")!.id);
      await red.deploy(flow);

      const arrivals: number[] = [];
      let waiting: { expect: boolean; started: number; pending: Set<number>; done: () => void } | undefined;
      for (let i = 0; i < clients; i++) {
        // The dashboard refuses a websocket without the polling handshake first, as its browsers do.
        const socket = io(red.url, { path: "/dashboard/socket.io", forceNew: true });
        sockets.push(socket);
        socket.on(`msg-input:${widget}`, (msg: { topic?: string; payload?: Snapshot }) => {
          if (!waiting || msg.topic !== "board") return;
          const row = msg.payload!.rows.find((r) => r.sub === "Jump host" && r.main === "Acme & Sons");
          const connected = !!row?.occupants.some((o) => o.user === "Burt");
          if (connected !== waiting.expect || !waiting.pending.has(i)) return;
          waiting.pending.delete(i);
          arrivals.push(performance.now() - waiting.started);
          if (waiting.pending.size === 0) waiting.done();
        });
      }
      await Promise.all(sockets.map((s) => new Promise<void>((resolve) => (s.connected ? resolve() : s.once("connect", () => resolve())))));
      const actor = sockets[0]!;
      // The row the ticks go to is added for the run.
      const main = "Acme & Sons";
      for (let t = 0; t < ticks + 5; t++) {
        const connect = t % 2 === 0;
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`tick ${t} did not reach every dashboard in 10 s`)), 10_000);
          waiting = { expect: connect, started: performance.now(), pending: new Set(sockets.map((_, i) => i)), done: () => (clearTimeout(timer), resolve()) };
          actor.emit("widget-send", widget, { payload: { action: connect ? "connect" : "release", main, sub: "Jump host", user: "Burt" } });
        });
        if (t === 4) arrivals.length = 0; // the first ticks warm the path up
      }
      const sorted = [...arrivals].sort((a, b) => a - b);
      const pct = (p: number) => Number(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!.toFixed(1));
      return {
        clients,
        ticks,
        update_p50_ms: pct(50),
        update_p99_ms: pct(99),
        update_max_ms: Number(sorted.at(-1)!.toFixed(1)),
        notes: "Each tick is a dashboard's action sent over socket.io; it is judged in a PostgreSQL transaction, announced with NOTIFY, and the new board is sent to every dashboard. Timed until every one of the clients has it.",
      };
    } finally {
      sockets.forEach((s) => s.close());
      await red.stop();
      await azurite.stop();
      await db.drop();
    }
  },
};
