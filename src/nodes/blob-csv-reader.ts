import type { AzureStorageProvider } from "../blob/azure";
import { FolderTarget } from "../blob/folder";
import { CsvFiles, downloadHeaders } from "../blob/reader";
import { InputError, PipelineError, asPipelineError } from "../core/errors";
import { configNode } from "../core/node/config";
import { handleInput } from "../core/node/input";
import { Lifecycle } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { StatusReporter, formatCount, showSetupProblem } from "../core/node/status";
import type { Node, NodeAPI, NodeDef, NodeMessage } from "../core/node/types";

interface BlobCsvReaderDef extends NodeDef {
  target?: "azure" | "folder";
  storage?: string;
  container?: string;
  folder?: string;
  prefix?: string;
  action?: "list" | "read";
  maxSize?: string | number;
}

export = function register(RED: NodeAPI) {
  function BlobCsvReaderNode(this: Node, def: BlobCsvReaderDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    const status = new StatusReporter(node);
    new Lifecycle(node).onClose(() => status.clear());
    let files: CsvFiles | undefined;
    const open = (): CsvFiles =>
      (files ??= new CsvFiles(
        config.target === "folder"
          ? new FolderTarget(String(config.folder ?? "").trim())
          : configNode<AzureStorageProvider>(RED, config.storage, "azure-storage-account", "storage account").account().target(config.container?.trim()),
        String(config.prefix ?? ""),
        Math.round((Number(config.maxSize) > 0 ? Number(config.maxSize) : 16) * 1024 * 1024),
      ));

    if (config.target !== "folder") {
      showSetupProblem(status, () => configNode<AzureStorageProvider>(RED, config.storage, "azure-storage-account", "storage account").account());
    }

    handleInput(node, status, async (msg, send) => {
      if ((msg.topic === "list" ? "list" : config.action) === "list") {
        const list = await open().list();
        status.ok(`${formatCount(list.length)} files`);
        send([Object.assign(msg, { payload: list }), null]);
        return;
      }
      const name = typeof msg.filename === "string" ? msg.filename : msg.payload;
      let content;
      try {
        content = await open().read(open().within(name));
      } catch (err) {
        // A refused name is the asker's mistake: answered (for an http response), not a node failure.
        if (err instanceof InputError) return refuse(msg, send, err.httpStatus ?? 400, err);
        throw err;
      }
      if (!content) return refuse(msg, send, 404, new InputError(`there is no file ${String(name)}`));
      status.ok(`${formatCount(content.length)} bytes`);
      send([Object.assign(msg, { payload: content, filename: open().within(name), headers: { ...(msg.headers as object), ...downloadHeaders(open().within(name)) } }), null]);
    });

    function refuse(msg: NodeMessage, send: (m: Array<NodeMessage | null>) => void, statusCode: number, error: PipelineError): void {
      status.warn(statusCode === 404 ? "no such file" : "refused");
      send([null, Object.assign(msg, { statusCode, payload: { error: statusCode === 404 ? "not found" : "refused", reason: asPipelineError(error).message } })]);
    }
  }

  RED.nodes.registerType("blob-csv-reader", BlobCsvReaderNode);
};
