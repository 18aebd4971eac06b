// Teamleader Focus API shapes as the documentation describes them (teamleadercrm/api src/**,
// teamleader.md §1). Only what this package reads is typed; records are kept whole as JSON.

export const SYNC_RESOURCES = ["companies", "contacts", "departments", "events", "invoices", "projects", "users"] as const;
export type SyncResource = (typeof SYNC_RESOURCES)[number];

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
