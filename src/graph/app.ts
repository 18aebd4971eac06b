import type { GraphClient } from "./client";

/** What a graph-app config node offers the nodes that use it. */
export interface GraphApp {
  readonly type: "graph-app";
  /** The Graph client of this Entra ID app, shared by its users and closed with the node. */
  graph(): GraphClient;
  /** The app and tenant ("graph:<tenant>:<client id>"): the key of their shared budgets. */
  readonly budgetKey: string;
}
