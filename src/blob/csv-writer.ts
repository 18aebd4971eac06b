import { randomBytes } from "node:crypto";
import { InputError, PipelineError, asPipelineError } from "../core/errors";
import { CsvFormat, csvText } from "./csv";
import { checkTemplate, dayOf, renderPath } from "./path-template";
import type { AppendUpload, CsvTarget, StagedUpload } from "./target";

export type WriteMode = "replace" | "append";

export interface CsvWriterOptions {
  target: CsvTarget;
  /** The file path template (see path-template.ts). */
  path: string;
  mode: WriteMode;
  format: CsvFormat;
  /** Write a header row (replace: at the top of every file; append: when the file is new). */
  header?: boolean;
  /** The zone the path's dates are taken in when a message has no `msg.date`. */
  timeZone: string;
  /** Data gathered before it is sent as one block (4 MiB, Azure's classic block size). */
  blockBytes?: number;
  /** A file whose next part does not come within this time is abandoned, nothing committed. */
  idleMs?: number;
}

/** One message's share of a file: Node-RED's `msg.parts`, or none for a whole file in one message. */
export interface CsvPart {
  rows: unknown;
  parts?: { id?: unknown; index?: unknown; count?: unknown };
  date?: unknown;
  filename?: unknown;
}

/** What the output reports once a file is written. */
export interface CsvFileResult {
  name: string;
  size: number;
  rows: number;
  mode: WriteMode;
  container?: string;
  folder?: string;
}

/** The original export's layout: a folder per year and month, a file per day. */
export const DEFAULT_PATH = "{yyyy}/{MM}/{yyyy}-{MM}-{dd}_call_logs.csv";

const DEFAULT_BLOCK_BYTES = 4 * 1024 * 1024;
const DEFAULT_IDLE_MS = 15 * 60_000;
/** Blocks staged side by side while the next one fills. */
const STAGING_AHEAD = 1;
/** Rows turned into CSV text at once. */
const ROWS_PER_TEXT = 100;

interface Waiting {
  part: CsvPart;
  index: number;
  last: boolean;
  resolve(result: CsvFileResult | undefined): void;
  reject(err: unknown): void;
}

/**
 * Writes the parts of CSV files as they come, in order, whatever order Node-RED delivers them in:
 * rows become CSV text, gathered into blocks of `blockBytes`, sent as they fill and committed at
 * the last part (replace) or appended (append). Memory holds one block per open file, whatever the
 * size of the file. A failed file reports its error once, on the part where it failed; its later
 * parts are dropped and nothing of it is committed.
 */
export class CsvWriter {
  private readonly files = new Map<string, FileSession>();
  private readonly failed = new Map<string, number>();
  private readonly appendLocks = new Map<string, Promise<unknown>>();
  private closed = false;

  constructor(private readonly options: CsvWriterOptions) {
    checkTemplate(options.path);
  }

  /** Takes one part; resolves with the file's result when this part finished the file. */
  write(part: CsvPart): Promise<CsvFileResult | undefined> {
    if (this.closed) return Promise.reject(new PipelineError("the blob-csv-writer node was closed by a redeploy", { status: "closed" }));
    const { id, index, last } = partsOf(part);
    if (this.failed.has(id)) return Promise.resolve(undefined);
    let session = this.files.get(id);
    if (!session) {
      session = new FileSession(this, id, this.options);
      this.files.set(id, session);
    }
    return session.take({ part, index, last });
  }

  /**
   * The source of file `id` stopped before its last part: what was written of it is dropped at
   * once (a folder's temporary file removed, staged blocks left uncommitted), and parts of it still
   * on their way end quietly, the source having told its own error. Resolves once that is done:
   * true when a file was open.
   */
  async abandon(id: string): Promise<boolean> {
    const session = this.files.get(String(id));
    if (!session) {
      this.finished(String(id), true);
      return false;
    }
    if (session.hasLastPart) return false; // complete as far as its source goes: it is committed
    this.files.delete(String(id));
    await session.abandon(new PipelineError("the source of this file stopped before its last part: nothing of it was written", { status: "source failed" }), true);
    return true;
  }

  /** Abandons every open file: nothing half-written is committed. */
  async close(): Promise<void> {
    this.closed = true;
    const open = [...this.files.values()];
    this.files.clear();
    await Promise.all(open.map((s) => s.abandon(new PipelineError("the blob-csv-writer node was closed before the file was complete", { status: "closed" }))));
  }

  /** @internal */
  finished(id: string, failed: boolean): void {
    this.files.delete(id);
    if (!failed) return;
    const now = Date.now();
    this.failed.set(id, now);
    for (const [key, at] of this.failed) if (now - at > (this.options.idleMs ?? DEFAULT_IDLE_MS)) this.failed.delete(key);
  }

  /** @internal Appends to one file run one after another, so a new file's header comes first. */
  async underAppendLock<T>(name: string, run: () => Promise<T>): Promise<T> {
    const previous = this.appendLocks.get(name) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(run);
    this.appendLocks.set(name, next);
    try {
      return await next;
    } finally {
      if (this.appendLocks.get(name) === next) this.appendLocks.delete(name);
    }
  }
}

class FileSession {
  private readonly waiting = new Map<number, Waiting>();
  private next = 0;
  private pumping = false;
  private done = false;
  private name?: string;
  private staged?: StagedUpload;
  private appender?: AppendUpload;
  private headerWritten = false;
  /** Parts gathered for the next block: its bytes in `block` (staged uploads) or as `buffer` chunks. */
  private buffer: Buffer[] = [];
  private buffered = 0;
  /**
   * The block being filled, and blocks staged and free again. Parts are written into these few
   * buffers, never into a new one each: a day's bytes do not pile up outside the heap waiting for
   * a full collection, however long the day.
   */
  private block?: Buffer;
  private readonly spareBlocks: Buffer[] = [];
  private rows = 0;
  private size = 0;
  private idle?: NodeJS.Timeout;
  /** Blocks on their way: the next parts are turned into CSV meanwhile. */
  private uploading: Array<Promise<void>> = [];
  private uploadError?: unknown;
  /** Why the file was given up, when it was: a part being written ends with this, or quietly. */
  private abandoned?: { error: PipelineError; quiet: boolean };
  /** The file's last part has come. */
  hasLastPart = false;

  constructor(
    private readonly writer: CsvWriter,
    private readonly id: string,
    private readonly options: CsvWriterOptions,
  ) {
    this.touch();
  }

  take(w: Omit<Waiting, "resolve" | "reject">): Promise<CsvFileResult | undefined> {
    return new Promise((resolve, reject) => {
      if (this.waiting.has(w.index) || w.index < this.next) {
        reject(new InputError(`part ${w.index} of ${this.name ?? "this file"} came twice (msg.parts.id ${this.id})`));
        return;
      }
      this.waiting.set(w.index, { ...w, resolve, reject });
      if (w.last) this.hasLastPart = true;
      this.touch();
      void this.pump();
    });
  }

  /** Gives the file up: waiting parts end with `err`, or without a word when `quiet`. */
  async abandon(err: PipelineError, quiet = false): Promise<void> {
    if (this.done) return;
    this.done = true;
    this.abandoned = { error: err, quiet };
    clearTimeout(this.idle);
    this.buffer = [];
    this.block = undefined;
    this.spareBlocks.length = 0;
    this.buffered = 0;
    for (const w of this.waiting.values()) {
      if (quiet) w.resolve(undefined);
      else w.reject(err);
    }
    this.waiting.clear();
    this.writer.finished(this.id, true);
    await this.staged?.abort().catch(() => undefined);
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (let w = this.waiting.get(this.next); w && !this.done; w = this.waiting.get(this.next)) {
        this.waiting.delete(this.next);
        this.next++;
        try {
          w.resolve(await this.process(w));
        } catch (err) {
          // A part under way when the file was given up ends as the others did.
          if (this.abandoned) {
            if (this.abandoned.quiet) w.resolve(undefined);
            else w.reject(this.abandoned.error);
            continue;
          }
          const error = asPipelineError(err);
          w.reject(error);
          await this.fail();
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  private async process(w: Waiting): Promise<CsvFileResult | undefined> {
    if (this.uploadError) throw this.uploadError;
    const rows = rowsOf(w.part.rows);
    if (w.index === 0) await this.open(w.part);
    let header = this.options.header !== false && !this.headerWritten && (this.options.mode === "replace" || this.appender?.needsHeader === true);
    const claim = header && this.appender?.appendHeader?.bind(this.appender);
    if (claim) {
      // Another instance may be starting the same file: the header goes in on its own, only if the file is still empty.
      await this.writer.underAppendLock(this.name!, () => claim(Buffer.from(csvText([], this.options.format, true), "utf8")));
      this.headerWritten = true;
      header = false;
    }
    this.headerWritten ||= header;
    const blockBytes = this.options.blockBytes ?? DEFAULT_BLOCK_BYTES;
    // A few rows at a time: one text for a whole part could pass 128 KB (two bytes a character
    // once one is not Latin-1) and wait in V8's large-object space for a full collection.
    for (let from = 0; from < rows.length || (from === 0 && header); from += ROWS_PER_TEXT) {
      await this.addText(csvText(rows.slice(from, from + ROWS_PER_TEXT), this.options.format, header && from === 0), blockBytes);
    }
    this.rows += rows.length;
    if (this.buffered >= blockBytes || w.last) await this.flush();
    if (!w.last) return undefined;
    if (this.staged) {
      await this.settleUploads(0);
      if (this.abandoned) throw this.abandoned.error;
      this.size = await this.staged.commit();
    }
    this.done = true;
    clearTimeout(this.idle);
    this.writer.finished(this.id, false);
    return { name: this.name!, size: this.size, rows: this.rows, mode: this.options.mode, ...this.options.target.location };
  }

  /** One piece of CSV text into the block being filled, the full block sent first when it does not fit. */
  private async addText(text: string, blockBytes: number): Promise<void> {
    if (text && this.staged) {
      const bytes = Buffer.byteLength(text, "utf8");
      if (this.buffered > 0 && this.buffered + bytes > blockBytes) await this.flush();
      if (bytes > blockBytes) {
        this.buffer.push(Buffer.from(text, "utf8"));
      } else {
        this.block ??= this.spareBlocks.pop() ?? Buffer.allocUnsafeSlow(blockBytes);
        this.block.write(text, this.buffered, "utf8");
      }
      this.buffered += bytes;
    } else if (text) {
      const data = Buffer.from(text, "utf8");
      this.buffer.push(data);
      this.buffered += data.length;
    }
  }

  private async open(part: CsvPart): Promise<void> {
    const filename = typeof part.filename === "string" ? part.filename : undefined;
    this.name = renderPath(this.options.path, { day: dayOf(part.date, this.options.timeZone), filename });
    if (this.options.mode !== "replace") {
      this.appender = await this.writer.underAppendLock(this.name, () => this.options.target.append(this.name!));
      return;
    }
    this.staged = await this.options.target.replace(this.name);
    // Given up while the file was being opened: nothing of it may stay.
    if (this.abandoned) {
      await this.staged.abort().catch(() => undefined);
      throw this.abandoned.error;
    }
  }

  private async flush(): Promise<void> {
    if (this.buffered === 0 && !(this.appender && this.size === 0)) return;
    const block = this.block;
    const chunks = block ? [block.subarray(0, this.buffered)] : this.buffer;
    const length = this.buffered;
    this.buffer = [];
    this.block = undefined;
    this.buffered = 0;
    if (this.staged) {
      if (length === 0) return;
      const upload = this.staged.stage(chunks, length);
      // Staged (retries included), the block's memory fills the next one.
      if (block) void upload.then(() => this.spareBlocks.push(block), () => undefined);
      upload.catch((err: unknown) => {
        this.uploadError ??= err;
      });
      this.uploading.push(upload);
      await this.settleUploads(STAGING_AHEAD);
    } else {
      const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length);
      this.size = await this.writer.underAppendLock(this.name!, () => this.appender!.append(data));
    }
  }

  /** Waits until at most `ahead` blocks are still on their way; throws the first that failed. */
  private async settleUploads(ahead: number): Promise<void> {
    while (this.uploading.length > ahead) await this.uploading.shift();
    if (this.uploadError) throw this.uploadError;
  }

  private async fail(): Promise<void> {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.idle);
    this.buffer = [];
    this.block = undefined;
    this.spareBlocks.length = 0;
    this.buffered = 0;
    // Parts already here belong to the failed file: they end quietly, the error was told once.
    for (const w of this.waiting.values()) w.resolve(undefined);
    this.waiting.clear();
    await this.staged?.abort().catch(() => undefined);
    this.writer.finished(this.id, true);
  }

  private touch(): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      void this.abandon(new PipelineError(`the rest of ${this.name ?? "a file"} never came (msg.parts.id ${this.id}): nothing of it was written`, { status: "incomplete file" }));
    }, this.options.idleMs ?? DEFAULT_IDLE_MS);
    this.idle.unref?.();
  }
}

/** A message's place in its file: `msg.parts`, or a whole file of its own. */
function partsOf(part: CsvPart): { id: string; index: number; last: boolean } {
  const p = part.parts;
  if (!p || typeof p !== "object" || p.id === undefined) return { id: `single-${randomBytes(8).toString("hex")}`, index: 0, last: true };
  const index = Number(p.index);
  if (!Number.isInteger(index) || index < 0) throw new InputError(`msg.parts.index must be a whole number from 0, not ${JSON.stringify(p.index)}`);
  const count = p.count === undefined ? undefined : Number(p.count);
  if (count !== undefined && (!Number.isInteger(count) || count <= index)) throw new InputError(`msg.parts.count (${JSON.stringify(p.count)}) does not fit msg.parts.index ${index}`);
  return { id: String(p.id), index, last: count !== undefined && index === count - 1 };
}

function rowsOf(payload: unknown): unknown[] {
  if (Array.isArray(payload)) return payload;
  if (payload && typeof payload === "object") return [payload];
  throw new InputError("msg.payload must be an array of rows (objects) or one row");
}
