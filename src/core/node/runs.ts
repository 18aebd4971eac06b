import type { Database } from "../db/database";
import { RunRecorder, RunSubject } from "../runs";
import type { Lifecycle } from "./lifecycle";
import type { Node } from "./types";

/**
 * The run recorder of a pipeline node: its runs go to `database` (the one the node already
 * uses; none: they are only announced), a failed write is one warning in the node's log, and a
 * closing node waits for the records of its last runs before its database closes.
 */
export function runRecorder(node: Pick<Node, "id" | "name" | "type" | "warn">, life: Pick<Lifecycle, "work">, pipeline: RunSubject["pipeline"], database: () => Promise<Database> | undefined): RunRecorder {
  return new RunRecorder(
    { nodeId: node.id, nodeName: node.name, nodeType: node.type, pipeline },
    { database, warn: (line) => node.warn(line), track: (write) => void life.work(write) },
  );
}
