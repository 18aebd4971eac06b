import { PipelineError } from "../core/errors";

/** A file as a listing shows it. */
export interface StoredFile {
  name: string;
  size: number;
  /** ISO timestamp of the last change. */
  modified: string;
}

/** Where a CSV file goes (and is read back from): a container of Azure Blob Storage, or a local folder. */
export interface CsvTarget {
  /** Where files land, for messages and the output: "container 'call-logs'", "folder /data/logs". */
  readonly where: string;
  /** The container or folder, for `msg.payload.container`/`folder`. */
  readonly location: { container?: string; folder?: string };
  /** A file that appears whole at `commit()`, replacing what was there, or not at all. */
  replace(name: string): Promise<StagedUpload>;
  /** A file that grows: `needsHeader` is true when this call created it (or found it empty). */
  append(name: string): Promise<AppendUpload>;
  /** The files whose names start with `prefix`, by name. */
  list(prefix: string): Promise<StoredFile[]>;
  /** A file's content, or undefined when there is no such file; larger than `maxBytes` is an error. */
  read(name: string, maxBytes: number): Promise<Buffer | undefined>;
}

/** A file too large to read into one message. */
export function tooLarge(name: string, size: number, maxBytes: number): PipelineError {
  return new PipelineError(`${name} has ${size} bytes, more than the ${maxBytes} this node reads at once`, { status: "file too large", code: "GW_FILE_TOO_LARGE", httpStatus: 413 });
}

export interface StagedUpload {
  /**
   * Sends one block, given as the chunks it is made of (no copy into one buffer); blocks keep the
   * order of the calls even when several are under way.
   */
  stage(chunks: Buffer[], length: number): Promise<void>;
  /** Makes the staged data the file, at once. Returns its size in bytes. */
  commit(): Promise<number>;
  /** Drops what was staged; the file stays as it was. */
  abort(): Promise<void>;
}

export interface AppendUpload {
  readonly needsHeader: boolean;
  /**
   * Writes `header` only if the file is still empty, in one step no other writer can come
   * between: false when another writer (another instance) wrote first.
   */
  appendHeader?(header: Buffer): Promise<boolean>;
  /** Adds data at the end; returns the file's size after it. */
  append(data: Buffer): Promise<number>;
}
