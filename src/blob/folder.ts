import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { ConfigError, PipelineError } from "../core/errors";
import type { AppendUpload, CsvTarget, StagedUpload } from "./target";

/**
 * A local folder as a CSV target, for users without Azure. Replace writes a temporary file beside
 * the final one and renames it into place at commit (atomic on one file system), so a reader sees
 * the old file or the new one. Append opens the file in append mode.
 */
export class FolderTarget implements CsvTarget {
  readonly root: string;

  constructor(folder: string) {
    if (!folder || !path.isAbsolute(folder)) throw new ConfigError(`the folder must be an absolute path, not "${folder}"`);
    this.root = path.resolve(folder);
  }

  get where(): string {
    return `folder ${this.root}`;
  }

  get location(): { folder: string } {
    return { folder: this.root };
  }

  async replace(name: string): Promise<StagedUpload> {
    const file = this.resolve(name);
    await this.mkdir(file);
    const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString("hex")}.tmp`);
    const handle = await this.io(`create ${temp}`, () => fs.open(temp, "wx", 0o644));
    let size = 0;
    let open = true;
    const close = async () => {
      if (!open) return;
      open = false;
      await handle.close();
    };
    return {
      stage: async (chunks, length) => {
        // Each block's place is fixed when it is handed over, so writes under way together keep their order.
        const at = size;
        size += length;
        await this.io(`write ${name}`, () => handle.writev(chunks, at));
      },
      commit: async () => {
        await this.io(`write ${name}`, async () => {
          await handle.datasync();
          await close();
          await fs.rename(temp, file);
        });
        return size;
      },
      abort: async () => {
        await close().catch(() => undefined);
        await fs.rm(temp, { force: true });
      },
    };
  }

  async append(name: string): Promise<AppendUpload> {
    const file = this.resolve(name);
    await this.mkdir(file);
    let needsHeader: boolean;
    try {
      needsHeader = (await fs.stat(file)).size === 0;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw this.error(`read ${name}`, err);
      needsHeader = true;
    }
    return {
      needsHeader,
      append: async (data) => {
        if (data.length > 0) await this.io(`append to ${name}`, () => fs.appendFile(file, data, { mode: 0o644 }));
        return (await fs.stat(file)).size;
      },
    };
  }

  private resolve(name: string): string {
    const file = path.resolve(this.root, name);
    if (!file.startsWith(this.root + path.sep)) throw new ConfigError(`"${name}" would be outside the folder ${this.root}`);
    return file;
  }

  private async mkdir(file: string): Promise<void> {
    await this.io(`create the folder of ${file}`, () => fs.mkdir(path.dirname(file), { recursive: true }));
  }

  private async io<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw this.error(what, err);
    }
  }

  private error(what: string, err: unknown): PipelineError {
    const code = (err as NodeJS.ErrnoException)?.code ?? "EIO";
    return new PipelineError(`could not ${what} in ${this.where}: ${(err as Error)?.message ?? String(err)}`, { status: "write failed", code: `GW_FILE_${code}`, cause: err });
  }
}
