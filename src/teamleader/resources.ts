import { DEFAULT_SYNC_RESOURCES, SortOrder, SyncResource } from "./types";

/** What the sync needs to know of each resource's list endpoint (teamleader.md §1.4). */
export interface ResourceSpec {
  endpoint: string;
  /**
   * departments.list takes no page: it answers everything at once. `unsure`: the reference shows
   * no page (products.list), so pages are asked for, and an answer longer than the page, or one
   * repeating the last, is taken as the endpoint answering everything at once.
   */
  paged: boolean | "unsure";
  /** `filter.updated_since` exists, so a delta run can ask for changes only. */
  updatedSince: boolean;
  /** List items carry `updated_at`, kept in its own column. */
  updatedAt: boolean;
  /** `includes=custom_fields` brings custom fields on the list call (companies, contacts). */
  customFields: boolean;
  /** `filter.ids` exists, so records a full sweep missed can be looked up before they are marked deleted. */
  idsFilter: boolean;
  /**
   * Sort for a full sweep: a key that new or changed records do not move, so offset paging does
   * not skip records while the data changes underneath (new records go to the end).
   */
  fullSort?: SortOrder[];
  /** Sort for a delta run: oldest change first, so changes made during the run come last. */
  deltaSort?: SortOrder[];
}

export const RESOURCES: Record<SyncResource, ResourceSpec> = {
  companies: {
    endpoint: "companies.list",
    paged: true,
    updatedSince: true,
    updatedAt: true,
    customFields: true,
    idsFilter: true,
    fullSort: [{ field: "added_at", order: "asc" }],
    deltaSort: [{ field: "updated_at", order: "asc" }],
  },
  contacts: {
    endpoint: "contacts.list",
    paged: true,
    updatedSince: true,
    updatedAt: true,
    customFields: true,
    idsFilter: true,
    fullSort: [{ field: "added_at", order: "asc" }],
    deltaSort: [{ field: "updated_at", order: "asc" }],
  },
  departments: { endpoint: "departments.list", paged: false, updatedSince: false, updatedAt: false, customFields: false, idsFilter: true },
  events: { endpoint: "events.list", paged: true, updatedSince: false, updatedAt: false, customFields: false, idsFilter: true, fullSort: [{ field: "starts_at", order: "asc" }] },
  // invoices.list sorts by invoice_number or invoice_date only; its default (invoice_number) it is.
  invoices: { endpoint: "invoices.list", paged: true, updatedSince: true, updatedAt: true, customFields: false, idsFilter: true },
  // The legacy projects module: updated_since since December 2021, but no updated_at in list items
  // and no documented ids filter.
  projects: { endpoint: "projects.list", paged: true, updatedSince: true, updatedAt: false, customFields: false, idsFilter: false, fullSort: [{ field: "created_at", order: "asc" }] },
  users: { endpoint: "users.list", paged: true, updatedSince: false, updatedAt: false, customFields: false, idsFilter: true },
  // The current Projects module: ids filter, no updated_since, no updated_at; project_key is
  // sequential, so a new project comes last.
  projects_v2: {
    endpoint: "projects-v2/projects.list",
    paged: true,
    updatedSince: false,
    updatedAt: false,
    customFields: true,
    idsFilter: true,
    fullSort: [{ field: "project_key", order: "asc" }],
  },
  // Sorted by created_at only (or weighted_value): a change does not move a deal, a new one comes last.
  deals: {
    endpoint: "deals.list",
    paged: true,
    updatedSince: true,
    updatedAt: true,
    customFields: true,
    idsFilter: true,
    fullSort: [{ field: "created_at", order: "asc" }],
    deltaSort: [{ field: "created_at", order: "asc" }],
  },
  // Only ids and page: no sort, no updated_since; items carry updated_at.
  quotations: { endpoint: "quotations.list", paged: true, updatedSince: false, updatedAt: true, customFields: false, idsFilter: true },
  time_tracking: { endpoint: "timeTracking.list", paged: true, updatedSince: false, updatedAt: false, customFields: false, idsFilter: true, fullSort: [{ field: "starts_on", order: "asc" }] },
  tasks: { endpoint: "tasks.list", paged: true, updatedSince: false, updatedAt: false, customFields: false, idsFilter: true, fullSort: [{ field: "due_on", order: "asc" }] },
  // The reference shows no page and no sort for products.list.
  products: { endpoint: "products.list", paged: "unsure", updatedSince: true, updatedAt: true, customFields: false, idsFilter: true },
};

/** Names a user may type for a resource besides its own. */
const ALIASES: Record<string, SyncResource> = {
  "projects-v2": "projects_v2",
  projectsv2: "projects_v2",
  timetracking: "time_tracking",
  "time-tracking": "time_tracking",
};

/** The resources a user named (an array, or a comma-separated string), checked; the default set when none. */
export function parseResources(value: unknown): SyncResource[] | { unknown: string[] } {
  const names = Array.isArray(value) ? value.map(String) : typeof value === "string" ? value.split(",") : [];
  const cleaned = [...new Set(names.map((n) => n.trim().toLowerCase()).filter(Boolean).map((n) => ALIASES[n] ?? n))];
  if (cleaned.length === 0) return [...DEFAULT_SYNC_RESOURCES];
  const unknown = cleaned.filter((n) => !(n in RESOURCES));
  if (unknown.length) return { unknown };
  // The documented order, whatever order they were named in.
  return (Object.keys(RESOURCES) as SyncResource[]).filter((r) => cleaned.includes(r));
}

/**
 * The resources to run once "projects" is read as the Projects module the account uses: the legacy
 * table, the projects_v2 one, or both. `projects_v2` named on its own stays.
 */
export function withProjectsModule(resources: readonly SyncResource[], uses: { legacy: boolean; v2: boolean }): SyncResource[] {
  const wanted = new Set(resources);
  if (wanted.has("projects")) {
    if (!uses.legacy) wanted.delete("projects");
    if (uses.v2) wanted.add("projects_v2");
  }
  return (Object.keys(RESOURCES) as SyncResource[]).filter((r) => wanted.has(r));
}
