import { randomBytes } from "node:crypto";
import { promises as fs } from "node:fs";
import path from "node:path";
import { ConfigError, PipelineError } from "../core/errors";
import { AppendUpload, CsvTarget, StagedUpload, StoredFile, tooLarge } from "./target";

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
      // The file's creator writes the header ("wx": one process creates it); an empty file left behind gets one too.
      appendHeader: (header) =>
        this.io(`append to ${name}`, async () => {
          try {
            await fs.writeFile(file, header, { flag: "wx", mode: 0o644 });
            return true;
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
          }
          if ((await fs.stat(file)).size > 0) return false;
          await fs.appendFile(file, header, { mode: 0o644 });
          return true;
        }),
      append: async (data) => {
        if (data.length > 0) await this.io(`append to ${name}`, () => fs.appendFile(file, data, { mode: 0o644 }));
        return (await fs.stat(file)).size;
      },
    };
  }

  async list(prefix: string): Promise<StoredFile[]> {
    const files: StoredFile[] = [];
    const walk = async (dir: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(dir, { withFileTypes: true });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
        throw this.error(`list ${dir}`, err);
      }
      for (const entry of entries) {
        const full = path.join(dir, entry.name);
        if (entry.name.startsWith(".")) continue; // temporary files of uploads under way
        if (entry.isDirectory()) await walk(full);
        else if (entry.isFile()) {
          const name = path.relative(this.root, full).split(path.sep).join("/");
          if (!name.startsWith(prefix)) continue;
          const stat = await fs.stat(full);
          files.push({ name, size: stat.size, modified: stat.mtime.toISOString() });
        }
      }
    };
    // Walk only the folder the prefix names (its directory part), not the whole root.
    const slash = prefix.lastIndexOf("/");
    await walk(slash >= 0 ? this.resolve(prefix.slice(0, slash)) : this.root);
    return files.sort((a, b) => a.name.localeCompare(b.name));
  }

  async read(name: string, maxBytes: number): Promise<Buffer | undefined> {
    const file = this.resolve(name);
    try {
      const stat = await fs.stat(file);
      if (!stat.isFile()) return undefined;
      if (stat.size > maxBytes) throw tooLarge(name, stat.size, maxBytes);
      return await fs.readFile(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
      if (err instanceof PipelineError) throw err;
      throw this.error(`read ${name}`, err);
    }
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
