// The part of Node-RED's runtime API this package uses, typed from its documented shape
// (Node-RED 4.x and 5.x). @types/node-red predates both, so we keep our own.
import type { EventEmitter } from "node:events";

export interface NodeMessage {
  _msgid?: string;
  payload?: unknown;
  topic?: string;
  parts?: MessageParts;
  [key: string]: unknown;
}

export interface MessageParts {
  id: string;
  index: number;
  count?: number;
  type?: string;
  [key: string]: unknown;
}

export interface NodeStatus {
  fill?: "red" | "green" | "yellow" | "blue" | "grey";
  shape?: "ring" | "dot";
  text?: string;
}

export type SendFunction = (msg: NodeMessage | null | Array<NodeMessage | NodeMessage[] | null>) => void;
export type DoneFunction = (err?: Error) => void;

export interface NodeDef {
  id: string;
  type: string;
  name?: string;
  z?: string;
  [key: string]: unknown;
}

export interface Node<Credentials = Record<string, string | undefined>> extends EventEmitter {
  id: string;
  type: string;
  name?: string;
  z?: string;
  credentials: Credentials;
  send(msg: NodeMessage | null | Array<NodeMessage | NodeMessage[] | null>): void;
  status(status: NodeStatus | string): void;
  log(msg: unknown): void;
  warn(msg: unknown): void;
  error(err: unknown, msg?: NodeMessage): void;
  debug(msg: unknown): void;
  trace(msg: unknown): void;
  on(event: "input", listener: (msg: NodeMessage, send: SendFunction, done: DoneFunction) => void): this;
  on(event: "close", listener: (removed: boolean, done: () => void) => void): this;
  on(event: string, listener: (...args: any[]) => void): this;
}

export interface RequestHandler {
  (req: any, res: any, next?: (err?: unknown) => void): void;
}

export interface ExpressLikeApp {
  get(path: string, ...handlers: RequestHandler[]): unknown;
  post(path: string, ...handlers: RequestHandler[]): unknown;
  use(...args: unknown[]): unknown;
}

export interface NodeAPI {
  nodes: {
    createNode(node: object, config: NodeDef): void;
    getNode(id: string): unknown;
    registerType(type: string, constructor: unknown, options?: { credentials?: Record<string, { type: "text" | "password" }>; settings?: Record<string, unknown> }): void;
    eachNode(cb: (node: NodeDef) => void): void;
  };
  log: { info(m: unknown): void; warn(m: unknown): void; error(m: unknown): void; debug(m: unknown): void; trace(m: unknown): void };
  settings: Record<string, any> & { userDir?: string; credentialSecret?: string | false };
  httpAdmin: ExpressLikeApp;
  httpNode: ExpressLikeApp;
  auth: { needsPermission(permission: string): RequestHandler };
  util: {
    evaluateNodeProperty(value: unknown, type: string, node: Node, msg: NodeMessage, callback?: (err: Error | null, value: unknown) => void): unknown;
    cloneMessage<T extends NodeMessage>(msg: T): T;
    generateId(): string;
  };
  version(): string;
  _(key: string, substitutions?: Record<string, unknown>): string;
}
