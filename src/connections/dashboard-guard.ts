/**
 * A Dashboard 2.0 plugin that keeps browsers to the widgets. Dashboard 2.0 takes a node id from a
 * browser's `widget-send`, `widget-action` and `widget-change` events and sends the browser's
 * message out of that node, whatever node it is: a socket.io client could make a connection-board
 * emit forged audit rows, or a jwt-auth node pass a message on as if its token had been checked.
 * The hooks below let a message through only for a node that a ui-base has registered as a widget.
 */
interface RuntimeLike {
  nodes: {
    getNode(id: string): unknown;
    eachNode(visit: (config: { id: string; type: string }) => void): void;
  };
  plugins: { registerPlugin(id: string, definition: Record<string, unknown>): void };
}

interface UiBaseNode {
  ui?: { widgets?: Map<string, unknown> };
}

export = function register(RED: RuntimeLike) {
  /** Whether a ui-base of this runtime knows `id` as one of its widgets. */
  function isWidget(id: unknown): boolean {
    if (typeof id !== "string" || !id) return false;
    let found = false;
    RED.nodes.eachNode((config) => {
      if (found || config.type !== "ui-base") return;
      const base = RED.nodes.getNode(config.id) as UiBaseNode | null;
      if (base?.ui?.widgets?.has(id)) found = true;
    });
    return found;
  }

  const only = (_conn: unknown, id: unknown, msg: unknown) => (isWidget(id) ? msg : null);

  RED.plugins.registerPlugin("gluework-dashboard-guard", {
    type: "node-red-dashboard-2",
    hooks: { onSend: only, onAction: only, onChange: only },
  });
};
