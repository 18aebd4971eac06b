import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import {
  AnonymousCredential,
  BlobServiceClient,
  ContainerClient,
  RestError,
  StoragePipelineOptions,
  StorageSharedKeyCredential,
} from "@azure/storage-blob";
import { ConfigError, PipelineError } from "../core/errors";
import { registerSecret } from "../core/redact";
import { cappedStorageClient } from "./capped-http";
import { AppendUpload, CsvTarget, StagedUpload, StoredFile, tooLarge } from "./target";

export type StorageAuth = "key" | "connection-string" | "sas";

export interface StorageAccountSettings {
  auth: StorageAuth;
  accountName?: string;
  accountKey?: string;
  connectionString?: string;
  /** An account or container SAS URL. */
  sasUrl?: string;
  /** The blob endpoint instead of https://<account>.blob.core.windows.net (Azurite, sovereign clouds). */
  endpoint?: string;
}

/** Azure Storage failed a request: what was being done, Azure's code and status. */
export class StorageError extends PipelineError {}

// The SDK's retry policy, shortened: four tries over about seven seconds, then a clear error.
const PIPELINE_OPTIONS: StoragePipelineOptions = {
  retryOptions: { maxTries: 4, retryDelayInMs: 1000, maxRetryDelayInMs: 8000, tryTimeoutInMs: 120_000 },
  userAgentOptions: { userAgentPrefix: "gluework-node-red" },
};

/** An Azure Storage account as the config node knows it: one service client, containers from it. */
export class AzureStorageAccount {
  private readonly service?: BlobServiceClient;
  private readonly containerSas?: ContainerClient;
  readonly accountName: string;

  /** `maxResponseBytes` caps every answer but downloads (which are capped by their range). */
  constructor(settings: StorageAccountSettings, options: { maxResponseBytes?: number } = {}) {
    const PIPELINE = { ...PIPELINE_OPTIONS, httpClient: cappedStorageClient({ maxResponseBytes: options.maxResponseBytes }) };
    registerSecret(settings.accountKey);
    registerSecret(settings.connectionString);
    registerSecret(settings.sasUrl);
    if (settings.auth === "connection-string") {
      if (!settings.connectionString) throw new ConfigError("the azure-storage-account node has no connection string", { status: "missing connection string" });
      try {
        this.service = BlobServiceClient.fromConnectionString(settings.connectionString, PIPELINE);
      } catch (err) {
        throw new ConfigError("the connection string of the azure-storage-account node cannot be read: copy it again from the portal", { cause: err });
      }
    } else if (settings.auth === "sas") {
      const url = parseUrl(settings.sasUrl, "SAS URL");
      registerSecret(url.searchParams.get("sig"));
      const containerName = url.pathname.split("/").filter(Boolean)[0];
      if (containerName) this.containerSas = new ContainerClient(url.toString(), new AnonymousCredential(), PIPELINE);
      else this.service = new BlobServiceClient(url.toString(), new AnonymousCredential(), PIPELINE);
    } else {
      if (!settings.accountName) throw new ConfigError("the azure-storage-account node has no account name", { status: "missing account name" });
      if (!settings.accountKey) throw new ConfigError("the azure-storage-account node has no access key", { status: "missing access key" });
      const endpoint = settings.endpoint ? parseUrl(settings.endpoint, "blob endpoint").toString() : `https://${settings.accountName}.blob.core.windows.net`;
      this.service = new BlobServiceClient(endpoint, new StorageSharedKeyCredential(settings.accountName, settings.accountKey), PIPELINE);
    }
    this.accountName = this.service?.accountName || this.containerSas?.accountName || settings.accountName || "";
  }

  /** The container a writer asked for; a container SAS URL allows only its own. */
  container(name: string | undefined): ContainerClient {
    if (this.containerSas) {
      if (name && name !== this.containerSas.containerName) {
        throw new ConfigError(`the SAS URL is for container '${this.containerSas.containerName}', not '${name}': leave the container blank or use an account SAS`);
      }
      return this.containerSas;
    }
    if (!name) throw new ConfigError("no container is set in the blob-csv-writer node");
    return this.service!.getContainerClient(name);
  }

  target(containerName: string | undefined): BlobTarget {
    return new BlobTarget(this.container(containerName), !this.containerSas);
  }
}

/**
 * A container as a CSV target. Replace: blocks staged under IDs unique to the upload, committed
 * together at the end, so readers see the old blob or the new one, never a part (uncommitted
 * blocks are dropped by Azure when another list is committed, or after a week). Append: an append
 * blob, created when missing.
 */
export class BlobTarget implements CsvTarget {
  private ensured?: Promise<void>;

  constructor(
    private readonly container: ContainerClient,
    /** False with a container SAS, which may not create containers. */
    private readonly mayCreateContainer: boolean,
  ) {}

  get where(): string {
    return `container '${this.container.containerName}'`;
  }

  get location(): { container: string } {
    return { container: this.container.containerName };
  }

  async replace(name: string): Promise<StagedUpload> {
    const blob = this.container.getBlockBlobClient(name);
    const upload = randomBytes(6).toString("hex");
    const ids: string[] = [];
    let size = 0;
    return {
      stage: async (chunks, length) => {
        // Every ID of a blob must have the same length: upload + zero-padded sequence. The ID takes
        // its place in the list at once, so blocks staged side by side keep their order.
        const id = Buffer.from(`${upload}-${String(ids.length).padStart(6, "0")}`).toString("base64");
        ids.push(id);
        size += length;
        // A body factory lets the SDK stream the chunks (and read them again on a retry).
        await this.call(`stage a block of ${name}`, () => blob.stageBlock(id, () => Readable.from(chunks, { objectMode: false }), length));
      },
      commit: async () => {
        await this.call(`commit ${name}`, () => blob.commitBlockList(ids, { blobHTTPHeaders: { blobContentType: "text/csv; charset=utf-8" } }));
        return size;
      },
      abort: async () => undefined,
    };
  }

  async append(name: string): Promise<AppendUpload> {
    const blob = this.container.getAppendBlobClient(name);
    const created = await this.call(`create ${name}`, () => blob.createIfNotExists({ blobHTTPHeaders: { blobContentType: "text/csv; charset=utf-8" } }));
    let needsHeader = created.succeeded;
    if (!needsHeader) {
      const props = await this.call(`read ${name}`, () => blob.getProperties());
      if (props.blobType && props.blobType !== "AppendBlob") {
        throw new StorageError(`${name} in ${this.where} is a ${props.blobType}, which cannot be appended to: choose another path or replace mode`, { status: "not an append blob", code: "GW_STORAGE_NOT_APPEND_BLOB" });
      }
      needsHeader = props.contentLength === 0;
    }
    return {
      needsHeader,
      // Only at offset 0: of writers racing to a new file, one header gets in (412 for the others).
      appendHeader: (header) =>
        this.call(`append to ${name}`, () =>
          blob.appendBlock(header, header.length, { conditions: { appendPosition: 0 } }).then(
            () => true,
            (err: { statusCode?: number }) => {
              if (err?.statusCode === 412) return false;
              throw err;
            },
          ),
        ),
      append: async (data) => {
        if (data.length === 0) return Number((await this.call(`read ${name}`, () => blob.getProperties())).contentLength ?? 0);
        let size = 0;
        // 4 MiB per append is what every service version takes.
        for (let at = 0; at < data.length; at += APPEND_LIMIT) {
          const chunk = data.subarray(at, at + APPEND_LIMIT);
          const res = await this.call(`append to ${name}`, () => blob.appendBlock(chunk, chunk.length));
          size = Number(res.blobAppendOffset ?? 0) + chunk.length;
        }
        return size;
      },
    };
  }

  async list(prefix: string): Promise<StoredFile[]> {
    return this.call(`list ${prefix || "the files"}`, async () => {
      const files: StoredFile[] = [];
      for await (const blob of this.container.listBlobsFlat({ prefix })) {
        files.push({ name: blob.name, size: Number(blob.properties.contentLength ?? 0), modified: (blob.properties.lastModified ?? new Date(0)).toISOString() });
      }
      return files.sort((a, b) => a.name.localeCompare(b.name));
    });
  }

  async read(name: string, maxBytes: number): Promise<Buffer | undefined> {
    const blob = this.container.getBlobClient(name);
    try {
      return await this.call(`read ${name}`, async () => {
        const props = await blob.getProperties();
        const size = Number(props.contentLength ?? 0);
        if (size > maxBytes) throw tooLarge(name, size, maxBytes);
        return size === 0 ? Buffer.alloc(0) : blob.downloadToBuffer(0, size);
      });
    } catch (err) {
      const cause = (err as StorageError).cause as RestError | undefined;
      if (cause?.statusCode === 404) return undefined;
      throw err;
    }
  }

  /** Runs one request; a container that is missing (new, or deleted meanwhile) is created once. */
  private async call<T>(what: string, request: () => Promise<T>): Promise<T> {
    if (this.mayCreateContainer) await this.ensureContainer();
    try {
      return await request();
    } catch (err) {
      if (this.mayCreateContainer && err instanceof RestError && err.code === "ContainerNotFound") {
        this.ensured = undefined;
        await this.ensureContainer();
        try {
          return await request();
        } catch (again) {
          throw this.storageError(what, again);
        }
      }
      throw this.storageError(what, err);
    }
  }

  private ensureContainer(): Promise<void> {
    this.ensured ??= this.container.createIfNotExists().then(
      () => undefined,
      (err: unknown) => {
        this.ensured = undefined;
        throw this.storageError(`create ${this.where}`, err);
      },
    );
    return this.ensured;
  }

  private storageError(what: string, err: unknown): PipelineError {
    if (err instanceof PipelineError) return err;
    const e = err as RestError & { details?: { errorCode?: string } };
    const code = e?.details?.errorCode ?? e?.code;
    const reason = e?.statusCode ? `${e.statusCode}${code ? ` ${code}` : ""}` : (e?.message ?? String(err)).split("\n")[0];
    const unreachable = !e?.statusCode;
    return new StorageError(`Azure Storage ${unreachable ? "could not be reached" : "refused"} to ${what} in ${this.where}: ${reason}`, {
      status: unreachable ? "storage unreachable" : "upload failed",
      code: `GW_STORAGE_${String(code ?? "ERROR").toUpperCase()}`,
      cause: err,
    });
  }
}

const APPEND_LIMIT = 4 * 1024 * 1024;

function parseUrl(value: string | undefined, what: string): URL {
  try {
    const url = new URL(String(value ?? ""));
    if (url.protocol !== "https:" && url.protocol !== "http:") throw new Error("not http(s)");
    return url;
  } catch (err) {
    throw new ConfigError(`the ${what} of the azure-storage-account node is not a URL`, { cause: err });
  }
}

/** What an `azure-storage-account` config node offers the nodes that use it. */
export interface AzureStorageProvider {
  readonly type: "azure-storage-account";
  /** The account's clients, made on first use (a setup mistake surfaces in the node that asks). */
  account(): AzureStorageAccount;
}
