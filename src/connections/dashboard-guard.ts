/**
 * A Dashboard 2.0 plugin that keeps browsers to the widgets. Dashboard 2.0 takes a node id from a
 * browser's `widget-send`, `widget-action` and `widget-change` events and sends the browser's
 * message out of that node, whatever node it is: a socket.io client could make a connection-board
 * emit forged audit rows, or a jwt-auth node pass a message on as if its token had been checked.
 * The hooks below let a message through only for a node that a ui-base has registered as a widget.
 *
 * The hooks run only after Dashboard's own code has read the packet, and its `widget-load` handler
 * (an async function) throws on an id that is not a string: an unhandled rejection that ends
 * Node-RED. So every packet is also checked before any handler sees it, by a socket.io middleware
 * on each socket of each ui-base's server.
 */
import { DashboardRegistry, packetAllowed } from "./dashboard-packets";

interface RuntimeLike {
  nodes: {
    getNode(id: string): unknown;
    eachNode(visit: (config: { id: string; type: string }) => void): void;
  };
  plugins: { registerPlugin(id: string, definition: Record<string, unknown>): void };
  events?: { on(event: string, listener: (...args: unknown[]) => void): void };
  log?: { warn(message: string): void };
}

interface UiBaseNode {
  ui?: { widgets?: Map<string, unknown>; pages?: Map<string, unknown>; groups?: Map<string, unknown> };
  uiShared?: { ioServer?: IoServer | null } | null;
}

type Next = (err?: Error) => void;
interface IoSocket {
  id: string;
  handshake?: { address?: string };
  use(fn: (packet: unknown[], next: Next) => void): unknown;
}
interface IoServer {
  use(fn: (socket: IoSocket, next: Next) => void): unknown;
  of(name: string): { sockets: Map<string, IoSocket> };
}

export = function register(RED: RuntimeLike) {
  function eachBase(visit: (base: UiBaseNode) => void): void {
    RED.nodes.eachNode((config) => {
      if (config.type !== "ui-base") return;
      const base = RED.nodes.getNode(config.id) as UiBaseNode | null;
      if (base) visit(base);
    });
  }

  const registry: DashboardRegistry = {
    isWidget(id) {
      let found = false;
      eachBase((base) => (found ||= !!base.ui?.widgets?.has(id)));
      return found;
    },
    isLayout(id) {
      let found = false;
      eachBase((base) => (found ||= !!base.ui?.pages?.has(id) || !!base.ui?.groups?.has(id)));
      return found;
    },
  };

  /** Whether a ui-base of this runtime knows `id` as one of its widgets. */
  const isWidget = (id: unknown): boolean => typeof id === "string" && !!id && registry.isWidget(id);
  const only = (_conn: unknown, id: unknown, msg: unknown) => (isWidget(id) ? msg : null);

  const guardedServers = new WeakSet<object>();
  const guardedSockets = new WeakSet<object>();

  // One log line a minute at most, however many packets and connections: a flood must not flood the log.
  let reportedAt = -Infinity;
  let droppedSinceReport = 0;

  /** Drops a refused packet without a word to the browser: `next(err)` would raise an unheard socket error. */
  function guardSocket(socket: IoSocket): void {
    if (guardedSockets.has(socket)) return;
    guardedSockets.add(socket);
    socket.use((packet, next) => {
      let allowed = false;
      try {
        allowed = packetAllowed(packet, registry);
      } catch {
        allowed = false;
      }
      if (allowed) return next();
      droppedSinceReport++;
      if (Date.now() - reportedAt < 60_000) return;
      reportedAt = Date.now();
      RED.log?.warn(
        `Dashboard: dropped ${droppedSinceReport} malformed or unknown-widget message(s) from browsers, the last from ${socket.handshake?.address ?? "an unknown address"}; ` +
          "more in the next minute are dropped without a log line",
      );
      droppedSinceReport = 0;
    });
  }

  /** Puts the packet check on every socket.io server a ui-base made, and on the sockets it already has. */
  function guardServers(): void {
    eachBase((base) => {
      const io = base.uiShared?.ioServer;
      if (!io) return;
      if (!guardedServers.has(io)) {
        guardedServers.add(io);
        io.use((socket, next) => {
          guardSocket(socket);
          next();
        });
      }
      for (const socket of io.of("/").sockets.values()) guardSocket(socket);
    });
  }

  // A ui-base makes its server when a flow starts; a deploy may bring a new one.
  RED.events?.on("flows:started", () => {
    try {
      guardServers();
    } catch (err) {
      RED.log?.warn(`Dashboard guard: could not check the dashboard's connections: ${(err as Error)?.message ?? String(err)}`);
    }
  });

  RED.plugins.registerPlugin("gluework-dashboard-guard", {
    type: "node-red-dashboard-2",
    hooks: { onSend: only, onAction: only, onChange: only },
  });
};
