import { randomBytes } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import path from "node:path";
import { ConfigError, InputError, PipelineError } from "../core/errors";
import { AppendUpload, CsvTarget, StagedUpload, StoredFile, tooLarge } from "./target";

/**
 * A local folder as a CSV target, for users without Azure. Replace writes a temporary file beside
 * the final one and renames it into place at commit (atomic on one file system), so a reader sees
 * the old file or the new one. Append opens the file in append mode.
 *
 * Nothing below the folder is followed through a symbolic link, for reading or writing: a file is
 * opened with O_NOFOLLOW, every folder on its way is checked with lstat, and the opened file's real
 * path must be the one its name gives. Whoever can write into the folder cannot make it serve or
 * overwrite a file elsewhere.
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
    const handle = await this.openInside(temp, name, O_WRONLY | O_CREAT | O_EXCL, `create ${temp}`);
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
      const stat = await fs.lstat(file);
      if (stat.isSymbolicLink()) throw throughLink(name);
      if (!stat.isFile()) throw notRegular(name);
      needsHeader = stat.size === 0;
    } catch (err) {
      if (err instanceof PipelineError) throw err;
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw this.error(`read ${name}`, err);
      needsHeader = true;
    }
    const appendTo = async <T>(flags: number, write: (handle: FileHandle) => Promise<T>): Promise<T> => {
      const handle = await this.openInside(file, name, O_WRONLY | O_APPEND | flags, `append to ${name}`);
      try {
        return await this.io(`append to ${name}`, () => write(handle));
      } finally {
        await handle.close().catch(() => undefined);
      }
    };
    return {
      needsHeader,
      // The file's creator writes the header (O_EXCL: one process creates it); an empty file left behind gets one too.
      appendHeader: async (header) => {
        try {
          return await appendTo(O_CREAT | O_EXCL, async (handle) => (await handle.write(header), true));
        } catch (err) {
          if ((err as PipelineError).code !== "GW_FILE_EEXIST") throw err;
        }
        return appendTo(0, async (handle) => {
          if ((await handle.stat()).size > 0) return false;
          await handle.write(header);
          return true;
        });
      },
      append: (data) =>
        appendTo(O_CREAT, async (handle) => {
          if (data.length > 0) await handle.write(data);
          return (await handle.stat()).size;
        }),
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
          const stat = await fs.lstat(full);
          if (!stat.isFile()) continue;
          files.push({ name, size: stat.size, modified: stat.mtime.toISOString() });
        }
      }
    };
    // Walk only the folder the prefix names (its directory part), not the whole root, and never through a link.
    const slash = prefix.lastIndexOf("/");
    const start = slash >= 0 ? this.resolve(prefix.slice(0, slash)) : this.root;
    if (start !== this.root) {
      try {
        await this.checkFolders(start, prefix.slice(0, slash));
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "ENOENT") return [];
        throw err instanceof PipelineError ? err : this.error(`list ${start}`, err);
      }
    }
    await walk(start);
    return files.sort((a, b) => a.name.localeCompare(b.name));
  }

  async read(name: string, maxBytes: number): Promise<Buffer | undefined> {
    const file = this.resolve(name);
    let handle: FileHandle;
    try {
      // O_NONBLOCK: a FIFO put in the folder must not hold the read open for ever (it is refused below).
      handle = await this.openInside(file, name, O_RDONLY | O_NONBLOCK, `read ${name}`);
    } catch (err) {
      if ((err as PipelineError).code === "GW_FILE_ENOENT") return undefined;
      throw err;
    }
    try {
      const stat = await handle.stat();
      if (stat.size > maxBytes) throw tooLarge(name, stat.size, maxBytes);
      return await this.io(`read ${name}`, () => handle.readFile());
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  /**
   * Opens a file below the folder without following a link: not the file itself (O_NOFOLLOW), not
   * a folder on its way (lstat), and, against a folder swapped in between, the opened file's real
   * path must be the one its name gives. Only a regular file is opened.
   */
  private async openInside(file: string, name: string, flags: number, what: string): Promise<FileHandle> {
    const relative = path.relative(this.root, file);
    await this.io(what, () => this.checkFolders(path.dirname(file), name));
    let handle: FileHandle;
    try {
      handle = await fs.open(file, flags | O_NOFOLLOW, 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ELOOP") throw throughLink(name);
      throw this.error(what, err);
    }
    try {
      if (!(await handle.stat()).isFile()) throw notRegular(name);
      const expected = path.join(await this.io(what, () => fs.realpath(this.root)), relative);
      if ((await openedPath(handle, file)) !== expected) throw throughLink(name);
      return handle;
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err instanceof PipelineError ? err : this.error(what, err);
    }
  }

  /** Every folder from the root down to `dir` is a real folder, no link (ENOENT when one is missing). */
  private async checkFolders(dir: string, name: string): Promise<void> {
    const parts = path.relative(this.root, dir).split(path.sep).filter(Boolean);
    let at = this.root;
    for (const part of parts) {
      at = path.join(at, part);
      const stat = await fs.lstat(at);
      if (stat.isSymbolicLink() || !stat.isDirectory()) throw throughLink(name);
    }
  }

  private resolve(name: string): string {
    const file = path.resolve(this.root, name);
    if (!file.startsWith(this.root + path.sep)) throw new ConfigError(`"${name}" would be outside the folder ${this.root}`);
    return file;
  }

  /** Creates the folders of a file one by one, each checked to be a folder and no link. */
  private async mkdir(file: string): Promise<void> {
    const what = `create the folder of ${file}`;
    // The configured folder itself may be a link: the flow author chose it.
    await this.io(what, () => fs.mkdir(this.root, { recursive: true }));
    let at = this.root;
    for (const part of path.relative(this.root, path.dirname(file)).split(path.sep).filter(Boolean)) {
      at = path.join(at, part);
      await this.io(what, () => fs.mkdir(at).catch((err: NodeJS.ErrnoException) => (err.code === "EEXIST" ? undefined : Promise.reject(err))));
      const stat = await this.io(what, () => fs.lstat(at));
      if (stat.isSymbolicLink() || !stat.isDirectory()) throw throughLink(path.relative(this.root, file).split(path.sep).join("/"));
    }
  }

  private async io<T>(what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      if (err instanceof PipelineError) throw err;
      throw this.error(what, err);
    }
  }

  private error(what: string, err: unknown): PipelineError {
    const code = (err as NodeJS.ErrnoException)?.code ?? "EIO";
    return new PipelineError(`could not ${what} in ${this.where}: ${(err as Error)?.message ?? String(err)}`, { status: "write failed", code: `GW_FILE_${code}`, cause: err });
  }
}

const { O_RDONLY, O_WRONLY, O_APPEND, O_CREAT, O_EXCL, O_NOFOLLOW, O_NONBLOCK } = constants;

/** Where an open file really is: the kernel's name for the descriptor, or its real path when it has the same inode. */
async function openedPath(handle: FileHandle, file: string): Promise<string> {
  try {
    return await fs.readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    const [real, opened] = await Promise.all([fs.realpath(file), handle.stat()]);
    const found = await fs.stat(real);
    return found.ino === opened.ino && found.dev === opened.dev ? real : "";
  }
}

function throughLink(name: string): InputError {
  return new InputError(`${name} is a symbolic link or lies behind one: only regular files inside the folder are read or written`, { status: "refused", code: "GW_FILE_LINK", httpStatus: 403 });
}

function notRegular(name: string): InputError {
  return new InputError(`${name} is not a regular file: only regular files inside the folder are read or written`, { status: "refused", code: "GW_FILE_NOT_REGULAR", httpStatus: 403 });
}
