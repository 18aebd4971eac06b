// The parts of node-red-node-test-helper 0.3.x the tests use.
declare module "node-red-node-test-helper" {
  import type { EventEmitter } from "node:events";
  interface TestNode extends EventEmitter {
    id: string;
    receive(msg: Record<string, unknown>): void;
    [key: string]: any;
  }
  interface Helper {
    init(nodeRedRuntime: string, userSettings?: Record<string, unknown>): void;
    settings(userSettings: Record<string, unknown>): void;
    load(nodes: unknown, flow: object[], credentials?: Record<string, Record<string, string>>): Promise<void>;
    unload(): Promise<void>;
    getNode(id: string): TestNode;
    startServer(): Promise<void>;
    stopServer(): Promise<void>;
    url(): string;
    request(): any;
    setFlows(flow: object[], type?: string, credentials?: Record<string, Record<string, string>>): Promise<void>;
    log(): any;
    clearFlows(): Promise<void>;
    _RED: any;
  }
  const helper: Helper;
  export = helper;
}
