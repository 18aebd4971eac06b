import { SortOrder, SyncResource } from "./types";

/** What the sync needs to know of each resource's list endpoint (teamleader.md §1.4). */
export interface ResourceSpec {
  endpoint: string;
  /** departments.list takes no page: it answers everything at once. */
  paged: boolean;
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
};

/** The resources a user named (an array, or a comma-separated string), checked; all of them when none. */
export function parseResources(value: unknown): SyncResource[] | { unknown: string[] } {
  const names = Array.isArray(value) ? value.map(String) : typeof value === "string" ? value.split(",") : [];
  const cleaned = [...new Set(names.map((n) => n.trim().toLowerCase()).filter(Boolean))];
  if (cleaned.length === 0) return Object.keys(RESOURCES) as SyncResource[];
  const unknown = cleaned.filter((n) => !(n in RESOURCES));
  if (unknown.length) return { unknown };
  // The documented order, whatever order they were named in.
  return (Object.keys(RESOURCES) as SyncResource[]).filter((r) => cleaned.includes(r));
}
