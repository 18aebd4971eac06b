import { InputError } from "../core/errors";
import { safeRelativePath } from "./path-template";
import type { CsvTarget, StoredFile } from "./target";

/**
 * Reads back the files a writer wrote, confined to one folder of the target: a name that is not a
 * plain relative path, or that lies outside the folder, is refused before anything is touched.
 */
export class CsvFiles {
  readonly folder: string;

  constructor(
    private readonly target: CsvTarget,
    folder: string,
    private readonly maxBytes: number,
  ) {
    const trimmed = folder.trim().replace(/^\/+|\/+$/g, "");
    this.folder = trimmed ? `${safeRelativePath(trimmed)}/` : "";
  }

  /** The files in the folder (and below it), newest name first: weekly files read best that way. */
  async list(): Promise<StoredFile[]> {
    const files = await this.target.list(this.folder);
    return files.filter((f) => !f.name.endsWith("/")).reverse();
  }

  /** One file's content, or undefined when it does not exist. */
  read(name: string): Promise<Buffer | undefined> {
    return this.target.read(this.within(name), this.maxBytes);
  }

  /** The name as a path inside the folder; anything else is refused. */
  within(name: unknown): string {
    if (typeof name !== "string" || !name.trim()) throw new InputError("no file name was given");
    const path = safeRelativePath(name.trim());
    if (!path.startsWith(this.folder)) throw new InputError(`"${name}" is not in the folder ${this.folder || "/"}`);
    return path;
  }
}

/** Headers for an `http response` that serves a file as a download. */
export function downloadHeaders(name: string): Record<string, string> {
  const base = name.split("/").pop() ?? "download.csv";
  const ascii = base.replace(/[^A-Za-z0-9._-]/g, "_");
  return {
    "content-type": base.toLowerCase().endsWith(".csv") ? "text/csv; charset=utf-8" : "application/octet-stream",
    "content-disposition": `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(base)}`,
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
  };
}
