// Teamleader Focus API shapes as the documentation describes them (teamleadercrm/api src/**,
// teamleader.md §1). Only what this package reads is typed; records are kept whole as JSON.

/**
 * Every resource a sync can write, a table each. `projects` is the legacy Projects module
 * (`projects.list`), `projects_v2` the current one (`projects-v2/projects.list`); a user who asks
 * for "projects" gets the module the account uses (see `ProjectsModule`).
 */
export const SYNC_RESOURCES = ["companies", "contacts", "departments", "events", "invoices", "projects", "users", "projects_v2", "deals", "quotations", "time_tracking", "tasks", "products"] as const;
export type SyncResource = (typeof SYNC_RESOURCES)[number];

/** What a sync runs when no resources are named: the first release's set, projects as the module in use. */
export const DEFAULT_SYNC_RESOURCES: readonly SyncResource[] = ["companies", "contacts", "departments", "events", "invoices", "projects", "users"];

/**
 * Which Projects module "projects" means: the legacy one, the current one (projects-v2), both
 * (an account moving from one to the other), or the one `accounts.projects-v2-status` names.
 */
export type ProjectsModule = "detect" | "legacy" | "new" | "both";
export const PROJECTS_MODULES: readonly ProjectsModule[] = ["detect", "legacy", "new", "both"];

/** A record of any list endpoint: an id, and whatever else the endpoint sends. */
export interface TeamleaderRecord {
  id: string;
  updated_at?: string;
  [field: string]: unknown;
}

export interface SortOrder {
  field: string;
  order?: "asc" | "desc";
}

/** The JSON body of a `<resource>.list` call. */
export interface ListRequest {
  filter?: Record<string, unknown>;
  page?: { size: number; number: number };
  sort?: SortOrder[];
  /** Optional fields, comma-separated: `custom_fields`. Not `include`, which sideloads. */
  includes?: string;
  [field: string]: unknown;
}

export interface ListResponse<T = TeamleaderRecord> {
  data: T[];
  meta?: { page?: { size: number; number: number }; matches?: number };
  included?: Record<string, unknown[]>;
}

/** `{ errors: [{ code, title, status, meta: { type, hint, field } }] }`, richer than documented (teamleader.md §1.6). */
export interface TeamleaderErrorBody {
  errors?: Array<{ code?: number | string; title?: string; status?: number; meta?: { type?: string; hint?: string; field?: string } }>;
}
