import { DatabaseProvider, configNode } from "../core/node/config";
import { runRecorder } from "../core/node/runs";
import type { Run } from "../core/runs";
import { handleInput } from "../core/node/input";
import { Lifecycle } from "../core/node/lifecycle";
import { migrateConfig } from "../core/node/migrate";
import { acknowledgePart, onSequenceAbandoned } from "../core/node/sequence-flow";
import { StatusReporter, formatCount, showSetupProblem } from "../core/node/status";
import type { Node, NodeAPI, NodeDef } from "../core/node/types";
import type { AzureStorageProvider } from "../blob/azure";
import { parseColumns } from "../blob/csv";
import { CsvWriter, DEFAULT_PATH, WriteMode } from "../blob/csv-writer";
import { FolderTarget } from "../blob/folder";
import { timeZone } from "../goto/days";
import { CALL_LOG_COLUMNS } from "../goto/types";

interface BlobCsvWriterDef extends NodeDef {
  target?: "azure" | "folder";
  storage?: string;
  container?: string;
  folder?: string;
  path?: string;
  mode?: WriteMode;
  columns?: string;
  header?: boolean;
  neutralise?: boolean;
  timeZone?: string;
  blockSize?: string | number;
  /** Where each file written is recorded as a run (none: not recorded). */
  runsDatabase?: string;
  /** The pipeline those runs belong to (the support board's weekly audit: board-audit). */
  pipeline?: string;
}

export = function register(RED: NodeAPI) {
  function BlobCsvWriterNode(this: Node, def: BlobCsvWriterDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const config = migrateConfig(def, []);
    const status = new StatusReporter(node);
    const life = new Lifecycle(node);
    let writer: CsvWriter | undefined;
    // With a database to record in, each file written (a whole sequence, or one append) is a run.
    const recorder = config.runsDatabase ? runRecorder(node, life, config.pipeline?.trim() || "csv-export", () => (RED.nodes.getNode(config.runsDatabase!) as DatabaseProvider | null)?.database()) : undefined;
    const runs = new Map<string, Run>();
    const endRun = (id: string | undefined, run: Run | undefined, err?: unknown) => {
      if (id !== undefined) runs.delete(id);
      if (run) run.end(err === undefined ? "success" : "failure", err);
    };
    life.onClose(async () => {
      status.clear();
      await writer?.close();
      for (const [id, run] of runs) endRun(id, run, new Error("the blob-csv-writer node was closed before the file was complete"));
    });
    // A source that fails half-way through a file says so: the file is dropped now, not at the idle timeout.
    life.onClose(
      onSequenceAbandoned((id) => {
        endRun(id, runs.get(id), new Error("the source failed half-way through the file: it was not written"));
        void writer?.abandon(id).then(
          (open) => open && status.warn("source failed: file not written"),
          (err: unknown) => node.warn(err),
        );
      }),
    );
    // Built on first use, so a setup mistake reaches done(err) and a Catch node.
    const open = (): CsvWriter =>
      (writer ??= new CsvWriter({
        target:
          config.target === "folder"
            ? new FolderTarget(String(config.folder ?? "").trim())
            : configNode<AzureStorageProvider>(RED, config.storage, "azure-storage-account", "storage account").account().target(config.container?.trim()),
        path: config.path?.trim() || DEFAULT_PATH,
        mode: config.mode === "append" ? "append" : "replace",
        format: { columns: parseColumns(config.columns, CALL_LOG_COLUMNS), neutraliseFormulas: config.neutralise !== false },
        header: config.header !== false,
        timeZone: timeZone(config.timeZone),
        blockBytes: Number(config.blockSize) > 0 ? Math.round(Number(config.blockSize) * 1024 * 1024) : undefined,
      }));

    if (config.target !== "folder") {
      showSetupProblem(status, () => configNode<AzureStorageProvider>(RED, config.storage, "azure-storage-account", "storage account").account());
    }

    handleInput(node, status, async (msg, send) => {
      // Once per file: later parts of a file that failed must not paint the red status over.
      if (!msg.parts || msg.parts.index === 0) status.busy("writing");
      const sequence = msg.parts?.id === undefined ? undefined : String(msg.parts.id);
      let run = sequence === undefined ? undefined : runs.get(sequence);
      if (!run && recorder) {
        run = recorder.start(typeof msg.filename === "string" ? msg.filename : null);
        if (sequence !== undefined) runs.set(sequence, run);
      }
      let result;
      try {
        result = await open().write({ rows: msg.payload, parts: msg.parts, date: msg.date, filename: msg.filename });
      } catch (err) {
        endRun(sequence, run, err);
        throw err;
      } finally {
        acknowledgePart(msg.parts); // the sender may read on
      }
      if (!result) return; // a part of a file that is not complete yet
      if (run) {
        run.key = result.name;
        run.counts.rows = result.rows;
        run.details = { size: result.size };
        endRun(sequence, run);
      }
      status.ok(`${formatCount(result.rows)} rows written`);
      const out = { ...msg, payload: result };
      delete out.parts;
      send(out);
    }, { life });
  }

  RED.nodes.registerType("blob-csv-writer", BlobCsvWriterNode);
};
