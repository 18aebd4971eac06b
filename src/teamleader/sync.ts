import { PipelineError, errorMessage } from "../core/errors";
import type { Run } from "../core/runs";
import { MAX_PAGE_SIZE, Page, PageError, TeamleaderApi } from "./api";
import { RESOURCES, ResourceSpec, withProjectsModule } from "./resources";
import { BatchWriteError, BatchWriter, SyncTables } from "./tables";
import { ListRequest, ProjectsModule, SyncResource, TeamleaderRecord } from "./types";

export type SyncMode = "delta" | "full";

export interface SyncProgress {
  resource: SyncResource;
  /** 1-based position of the resource in this run, and how many there are. */
  position: number;
  of: number;
  page: number;
  fetched: number;
}

export interface ResourceSummary {
  /** "synced", or "already running" when another sync of the resource held it. */
  status: "synced" | "already running";
  /** What ran: a delta asked for a resource without `updated_since` runs as a full sweep. */
  mode: SyncMode;
  fetched: number;
  inserted: number;
  updated: number;
  /** Records marked deleted: a full sweep no longer saw them. */
  deleted: number;
  /**
   * Records a full sweep no longer saw whose lookup could not tell whether they are gone (an
   * answer other than the record or 404): left as they are, to be looked up again next sweep.
   */
  unresolved?: number;
  /** What the first such lookup got, for the user to act on. */
  unresolvedReason?: string;
  pages: number;
  seconds: number;
  /** For "already running": where the running sync said it runs. */
  runningOn?: string;
}

export interface SyncSummary {
  mode: SyncMode;
  seconds: number;
  resources: Partial<Record<SyncResource, ResourceSummary>>;
}

export interface SyncRequest {
  resources: readonly SyncResource[];
  mode: SyncMode;
  /** What "projects" means: the module the account uses by default (see `ProjectsModule`). */
  projectsModule?: ProjectsModule;
  signal?: AbortSignal;
  onProgress?(progress: SyncProgress): void;
  /**
   * Starts the run of one resource (or of "projects" when the Projects module could not be told):
   * its requests are counted in it, and it ends with the resource as success, partial (records
   * whose lookup could not tell), skipped (already running) or failure.
   */
  startRun?(resource: SyncResource): Run;
}

export interface SyncSettings {
  /** Records per list call (Teamleader's maximum, 100, by default). */
  pageSize?: number;
  /** Rows per database write. */
  batchSize?: number;
  /** Database writes in flight at once. */
  writeConcurrency?: number;
  /** A delta run asks for changes since the cursor minus this much (10 minutes by default). */
  overlapMs?: number;
}

/** A sync stopped: which resource, at which page, and why. Rows written before it stay. */
export class SyncError extends PipelineError {
  constructor(
    message: string,
    readonly resource: SyncResource,
    readonly page: number | undefined,
    cause: unknown,
  ) {
    const c = cause as Partial<PipelineError>;
    super(message, { cause, status: c?.status && c.status !== "error" ? c.status : "sync failed", code: c?.code ?? "GW_TEAMLEADER_SYNC", httpStatus: c?.httpStatus });
  }
}

const DEFAULTS = { pageSize: MAX_PAGE_SIZE, batchSize: 500, writeConcurrency: 2, overlapMs: 10 * 60_000 };
const IDS_PER_LOOKUP = 100;
/** `.info` lookups in flight at once for a list without an ids filter; the limiter sets the pace. */
const INFO_LOOKUPS_AT_ONCE = 4;

/**
 * Teamleader into PostgreSQL, one resource at a time: each resource's list pages are fetched
 * (the next page while the previous one is written) and upserted in batches; a full sweep then
 * marks the records it no longer saw as deleted, after looking them up once more by id, since
 * offset paging over changing data can skip a record. The cursor moves only when a resource
 * completes, so a failed or killed run is finished by the next one without duplicates.
 */
export class TeamleaderSync {
  private readonly settings: typeof DEFAULTS;

  constructor(
    private readonly api: TeamleaderApi,
    private readonly tables: SyncTables,
    settings: SyncSettings = {},
  ) {
    this.settings = {
      pageSize: Math.min(MAX_PAGE_SIZE, Math.max(1, settings.pageSize ?? DEFAULTS.pageSize)),
      batchSize: Math.max(1, settings.batchSize ?? DEFAULTS.batchSize),
      writeConcurrency: Math.max(1, settings.writeConcurrency ?? DEFAULTS.writeConcurrency),
      overlapMs: Math.max(0, settings.overlapMs ?? DEFAULTS.overlapMs),
    };
  }

  async run(request: SyncRequest): Promise<SyncSummary> {
    const started = Date.now();
    await this.tables.ensure();
    const resources: SyncSummary["resources"] = {};
    let names: SyncResource[];
    try {
      names = await this.withProjectsModule(request);
    } catch (err) {
      request.startRun?.("projects").end("failure", err);
      throw err;
    }
    for (const [index, resource] of names.entries()) {
      resources[resource] = await this.syncResource(resource, request.mode, { ...request, position: index + 1, of: names.length });
    }
    return { mode: request.mode, seconds: seconds(started), resources };
  }

  async syncResource(resource: SyncResource, requested: SyncMode, request: Omit<SyncRequest, "resources"> & { position?: number; of?: number } = { mode: requested }): Promise<ResourceSummary> {
    const run = request.startRun?.(resource);
    try {
      const summary = await this.syncCounted(resource, requested, request, this.api.withCounts(run?.counts), run);
      if (run && summary.status === "already running") {
        run.details = { runningOn: summary.runningOn ?? null };
        run.end("skipped");
      } else if (run) {
        run.details = { mode: summary.mode, inserted: summary.inserted, updated: summary.updated, deleted: summary.deleted, ...(summary.unresolved ? { unresolved: summary.unresolved } : {}) };
        run.end(
          summary.unresolved ? "partial" : "success",
          summary.unresolved
            ? new PipelineError(`${summary.unresolved} ${resource} not seen in the sweep could not be looked up (${summary.unresolvedReason ?? "no answer"}); left as they are, looked up again next sweep`, { code: "GW_TEAMLEADER_UNRESOLVED" })
            : undefined,
        );
      }
      return summary;
    } catch (err) {
      run?.end("failure", err);
      throw err;
    }
  }

  /** The sync of one resource, its requests sent through `api` (the run's counting view of the API). */
  private async syncCounted(resource: SyncResource, requested: SyncMode, request: Omit<SyncRequest, "resources"> & { position?: number; of?: number }, api: TeamleaderApi, run?: Run): Promise<ResourceSummary> {
    const spec = RESOURCES[resource];
    const started = Date.now();
    await this.tables.ensure();
    const lock = await this.tables.tryLock(resource);
    if (!lock) {
      const runningOn = await this.tables.runningOn(resource).catch(() => null);
      return { status: "already running", mode: requested, fetched: 0, inserted: 0, updated: 0, deleted: 0, pages: 0, seconds: 0, ...(runningOn ? { runningOn } : {}) };
    }
    let page: number | undefined;
    let writer: BatchWriter | undefined;
    try {
      const state = await this.tables.state(resource);
      const mode: SyncMode = requested === "delta" && spec.updatedSince && state?.cursor ? "delta" : "full";
      await this.tables.started(resource, mode);
      const sweepStart = await this.tables.now();
      const counts = { fetched: 0, inserted: 0, updated: 0, deleted: 0, pages: 0 };
      let serverStart: number | undefined;
      let maxUpdated: number | undefined;
      writer = new BatchWriter(this.tables, resource, { batchSize: this.settings.batchSize, concurrency: this.settings.writeConcurrency, updatedAt: spec.updatedAt });

      const body = this.listRequest(spec, mode, state?.cursor ?? null);
      const pages = api.pages<TeamleaderRecord>(spec.endpoint, body, { paged: spec.paged, signal: request.signal })[Symbol.asyncIterator]();
      // The next page is asked for while the previous one is written.
      let next = pages.next();
      let done = false;
      try {
        for (;;) {
          let result: IteratorResult<Page<TeamleaderRecord>>;
          try {
            result = await next;
          } catch (err) {
            page = err instanceof PageError ? err.page : (page ?? 0) + 1;
            await writer.flush().catch(() => undefined); // keep what was fetched; the fetch failure is the news
            throw err;
          }
          if (result.done) {
            done = true;
            break;
          }
          const current = result.value;
          page = current.number;
          next = pages.next();
          next.catch(() => undefined); // awaited on the next turn; a failure there is handled there
          serverStart ??= current.serverTime;
          counts.pages++;
          counts.fetched += current.records.length;
          if (run) {
            run.counts.pages++;
            run.counts.rows += current.records.length;
          }
          for (const record of current.records) {
            const at = spec.updatedAt && typeof record.updated_at === "string" ? Date.parse(record.updated_at) : NaN;
            if (!Number.isNaN(at) && (maxUpdated === undefined || at > maxUpdated)) maxUpdated = at;
          }
          await writer.add(current.records, current.number);
          request.onProgress?.({ resource, position: request.position ?? 1, of: request.of ?? 1, page: current.number, fetched: counts.fetched });
        }
        await writer.flush();
      } finally {
        if (!done) await pages.return?.(undefined).catch(() => undefined);
      }
      page = undefined;

      let unresolved: { unresolved: number; unresolvedReason?: string } | undefined;
      if (mode === "full") {
        const swept = await this.sweepDeleted(api, resource, spec, sweepStart, writer, request.signal);
        counts.deleted = swept.deleted;
        if (swept.unresolved > 0) unresolved = { unresolved: swept.unresolved, unresolvedReason: swept.reason };
      }
      counts.inserted = writer.counts.inserted;
      counts.updated = writer.counts.updated;

      // Everything changed before the run began has now been seen: the server's clock says when
      // that was; without it, the newest change seen is the safe mark (teamleader.md §5).
      const cursor = spec.updatedSince ? (serverStart ?? maxUpdated ?? null) : null;
      const summary: ResourceSummary = { status: "synced", mode, ...counts, ...unresolved, seconds: seconds(started) };
      await this.tables.completed(resource, mode, cursor === null ? null : new Date(cursor), summary);
      return summary;
    } catch (err) {
      // Writes still in flight finish (or fail) before the lock goes.
      await writer?.settle();
      const error = this.explain(err, resource, err instanceof BatchWriteError ? err.lastPage : page, request.signal);
      await this.tables.failed(resource, error.message).catch(() => undefined);
      throw error;
    } finally {
      await lock.release();
    }
  }

  /** The resources to run, "projects" read as the Projects module chosen, or the one the account says it uses. */
  private async withProjectsModule(request: SyncRequest): Promise<SyncResource[]> {
    const module = request.projectsModule ?? "detect";
    if (!request.resources.includes("projects")) return [...request.resources];
    if (module !== "detect") return withProjectsModule(request.resources, { legacy: module !== "new", v2: module !== "legacy" });
    let version: "projects-v2" | "legacy";
    try {
      version = await this.api.projectsVersion(request.signal);
    } catch (err) {
      if (err instanceof PipelineError && err.code === "GW_TEAMLEADER_PROJECTS_MODULE") throw new SyncError(`the projects sync stopped: ${err.message}`, "projects", undefined, err);
      throw new SyncError(`the projects sync stopped: Teamleader did not say which Projects module the account uses (${errorMessage(err)}); choose legacy, new or both in the teamleader-query node`, "projects", undefined, err);
    }
    return withProjectsModule(request.resources, { legacy: version === "legacy", v2: version === "projects-v2" });
  }

  private listRequest(spec: ResourceSpec, mode: SyncMode, cursor: Date | null): ListRequest {
    const body: ListRequest = {};
    if (spec.paged) body.page = { size: this.settings.pageSize, number: 1 };
    if (mode === "delta" && cursor) {
      body.filter = { updated_since: teamleaderTime(cursor.getTime() - this.settings.overlapMs) };
      if (spec.deltaSort) body.sort = spec.deltaSort;
    } else if (spec.fullSort) {
      body.sort = spec.fullSort;
    }
    if (spec.customFields) body.includes = "custom_fields";
    return body;
  }

  /**
   * After a full sweep: rows it did not see are looked up before they are marked deleted, because
   * offset paging skips a record when another one before it disappears mid-sweep. Where the list
   * has an ids filter they are asked for 100 at a time; elsewhere (legacy projects) one by one
   * through `.info`, where only Teamleader's 404 counts as gone. Found ones are written; the rest
   * are marked. A lookup that cannot tell (any other answer, such as a 400 for an id the legacy
   * module no longer knows, or a failure) leaves its records as they are and is reported in the
   * summary: it never fails the sweep. Every lookup goes through the integration's limiter.
   */
  private async sweepDeleted(api: TeamleaderApi, resource: SyncResource, spec: ResourceSpec, sweepStart: string, writer: BatchWriter, signal?: AbortSignal): Promise<{ deleted: number; unresolved: number; reason?: string }> {
    const unseen = await this.tables.unseenSince(resource, sweepStart);
    if (unseen.length === 0) return { deleted: 0, unresolved: 0 };
    const found = new Set<string>();
    const unresolved = new Set<string>();
    let reason: string | undefined;
    const cannotTell = (ids: readonly string[], err: unknown) => {
      if (signal?.aborted) throw err;
      for (const id of ids) unresolved.add(id);
      reason ??= errorMessage(err instanceof PageError && err.cause !== undefined ? err.cause : err);
    };
    if (spec.idsFilter) {
      for (let i = 0; i < unseen.length; i += IDS_PER_LOOKUP) {
        const ids = unseen.slice(i, i + IDS_PER_LOOKUP);
        const body: ListRequest = { filter: { ids }, ...(spec.paged ? { page: { size: IDS_PER_LOOKUP, number: 1 } } : {}), ...(spec.customFields ? { includes: "custom_fields" } : {}) };
        try {
          for await (const page of api.pages<TeamleaderRecord>(spec.endpoint, body, { paged: spec.paged, signal })) {
            const wanted = page.records.filter((r) => ids.includes(String(r.id)));
            for (const r of wanted) found.add(String(r.id));
            await writer.add(wanted, page.number);
          }
        } catch (err) {
          if (err instanceof BatchWriteError) throw err;
          cannotTell(ids.filter((id) => !found.has(id)), err);
        }
      }
    } else {
      const info = spec.endpoint.replace(/\.list$/, ".info");
      let next = 0;
      const lookUp = async (): Promise<void> => {
        while (next < unseen.length) {
          const id = unseen[next++]!;
          let record: TeamleaderRecord | undefined;
          try {
            record = await api.info<TeamleaderRecord>(info, id, signal);
          } catch (err) {
            cannotTell([id], err);
            continue;
          }
          if (record) {
            found.add(id);
            await writer.add([record]);
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(INFO_LOOKUPS_AT_ONCE, unseen.length) }, lookUp));
    }
    await writer.flush();
    const gone = unseen.filter((id) => !found.has(id) && !unresolved.has(id));
    return { deleted: await this.tables.markDeleted(resource, gone, sweepStart), unresolved: unresolved.size, reason };
  }

  private explain(err: unknown, resource: SyncResource, page: number | undefined, signal?: AbortSignal): PipelineError {
    if (err instanceof SyncError) return err;
    if (signal?.aborted) {
      return new SyncError(`the ${resource} sync was stopped${page ? ` at page ${page}` : ""}: the node closed. Rows written so far stay; the next run completes it`, resource, page, err);
    }
    if (err instanceof BatchWriteError) return new SyncError(`the ${resource} sync stopped: ${err.message}`, resource, page, err.cause);
    const cause = err instanceof PageError && err.cause !== undefined ? err.cause : err;
    const where = page ? ` at page ${page}` : "";
    return new SyncError(`the ${resource} sync stopped${where}: ${errorMessage(cause)}`, resource, page, err);
  }
}

/** Teamleader's timestamp format: whole seconds and `+00:00`, which it wants rather than `Z` (teamleader.md §1.4). */
export function teamleaderTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.\d{3}Z$/, "+00:00");
}

function seconds(since: number): number {
  return Math.round((Date.now() - since) / 100) / 10;
}
