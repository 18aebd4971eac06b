/**
 * Which socket.io packets from a browser Dashboard 2.0 may see: its handlers trust the shape of
 * what they are sent (a string id first), and one that throws in an async handler ends Node-RED.
 */

/** The events Dashboard's browsers send with a widget's id first. */
const WIDGET_EVENT = /^widget-/;
/** Events a socket.io server raises itself; a client that sends one would trigger their listeners. */
const RESERVED = new Set(["connect", "connection", "connect_error", "disconnect", "disconnecting", "error", "newListener", "removeListener"]);
/** Dashboard's own front-end widgets (the connection notices) load under ids like `ui-notification`. */
const BUILT_IN_ID = /^ui-[a-z0-9-]{1,64}$/;
/** Far more than any widget message: a browser sends the widget's id and one message. */
const MAX_ARGS = 4;
const MAX_DEPTH = 32;
const MAX_VALUES = 50_000;

/** What a ui-base of this runtime knows, as the packet check asks it. */
export interface DashboardRegistry {
  isWidget(id: string): boolean;
  /** Pages and groups, whose ids a browser may load too. */
  isLayout(id: string): boolean;
}

/**
 * Whether Dashboard may see a packet `[event, ...args]` from a browser: a widget event must name a
 * widget by a non-empty string id (widget-load also one of Dashboard's own `ui-…` ids, a page or
 * a group), a reserved event is never taken from a client, and no packet may be shaped absurdly
 * (many arguments, deep nesting, huge collections).
 */
export function packetAllowed(packet: unknown, registry: DashboardRegistry): boolean {
  if (!Array.isArray(packet) || packet.length === 0 || packet.length > MAX_ARGS + 1) return false;
  const [event, ...args] = packet as [unknown, ...unknown[]];
  if (typeof event !== "string" || RESERVED.has(event)) return false;
  if (!reasonableShape(args)) return false;
  if (!WIDGET_EVENT.test(event) && event !== "ui-control" && event !== "ui-event") return true;
  const id = args[0];
  if (typeof id !== "string" || !id || id.length > 200) return false;
  if (event === "ui-event" && id === "all") return true;
  if (registry.isWidget(id)) return true;
  return event === "widget-load" && (BUILT_IN_ID.test(id) || registry.isLayout(id));
}

/** Nesting and size within bounds, walked without recursion. */
function reasonableShape(value: unknown): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]];
  let seen = 0;
  while (stack.length) {
    const [item, depth] = stack.pop()!;
    if (++seen > MAX_VALUES) return false;
    if (!item || typeof item !== "object") continue;
    if (depth >= MAX_DEPTH) return false;
    for (const child of Array.isArray(item) ? item : Object.values(item)) {
      if (child && typeof child === "object") stack.push([child, depth + 1]);
      else if (++seen > MAX_VALUES) return false;
    }
  }
  return true;
}
