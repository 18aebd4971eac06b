import { createHash } from "node:crypto";

/**
 * The records behind the Teamleader sandbox's list and info endpoints: generated from a seed, so
 * the same volume gives the same records every time, and changed, added and deleted over time
 * on request (or by a drift timer in the demo). A record is made from (seed, resource, index,
 * version) when it is asked for, so 100,000 companies cost a few arrays, not 100,000 objects.
 *
 * Shapes follow the documented list items (teamleader.md §1.4; teamleadercrm/api src/**), with
 * the fields a sync cares about. Extra fields Teamleader sends are not all here.
 */

export const TEAMLEADER_RESOURCES = ["companies", "contacts", "departments", "events", "invoices", "projects", "users", "projects_v2", "deals", "quotations", "time_tracking", "tasks", "products"] as const;
export type TeamleaderResourceName = (typeof TEAMLEADER_RESOURCES)[number];

export type Volumes = Partial<Record<TeamleaderResourceName, number>>;

export const DEFAULT_VOLUMES: Record<TeamleaderResourceName, number> = {
  companies: 1000,
  contacts: 2500,
  departments: 3,
  events: 500,
  invoices: 1500,
  projects: 200,
  users: 25,
  // A legacy-projects account by default: the current module holds nothing.
  projects_v2: 0,
  deals: 300,
  quotations: 150,
  time_tracking: 1200,
  tasks: 400,
  products: 80,
};

type Json = Record<string, unknown>;

export interface ResourceBehaviour {
  /** The path before `.list` and `.info` when it is not the resource's name. */
  endpoint?: string;
  /** `filter.updated_since` is accepted (companies, contacts, invoices, legacy projects). */
  updatedSince: boolean;
  /** List items carry `updated_at`. */
  hasUpdatedAt: boolean;
  /** `page` is honoured; departments.list has none and answers everything every time. */
  paged: boolean;
  sortFields: readonly string[];
  defaultSort: { field: string; order: "asc" | "desc" };
  /** `includes=custom_fields` adds custom fields to list items (companies and contacts, since July 2024). */
  customFieldsOnList: boolean;
  /** The singular noun for error titles: "Company". */
  noun: string;
}

export const BEHAVIOUR: Record<TeamleaderResourceName, ResourceBehaviour> = {
  companies: { updatedSince: true, hasUpdatedAt: true, paged: true, sortFields: ["name", "added_at", "updated_at"], defaultSort: { field: "name", order: "asc" }, customFieldsOnList: true, noun: "Company" },
  contacts: { updatedSince: true, hasUpdatedAt: true, paged: true, sortFields: ["name", "added_at", "updated_at"], defaultSort: { field: "name", order: "asc" }, customFieldsOnList: true, noun: "Contact" },
  departments: { updatedSince: false, hasUpdatedAt: false, paged: false, sortFields: ["default_department", "name", "created_at"], defaultSort: { field: "name", order: "asc" }, customFieldsOnList: false, noun: "Department" },
  events: { updatedSince: false, hasUpdatedAt: false, paged: true, sortFields: ["starts_at"], defaultSort: { field: "starts_at", order: "asc" }, customFieldsOnList: false, noun: "Event" },
  invoices: { updatedSince: true, hasUpdatedAt: true, paged: true, sortFields: ["invoice_number", "invoice_date"], defaultSort: { field: "invoice_number", order: "asc" }, customFieldsOnList: false, noun: "Invoice" },
  projects: { updatedSince: true, hasUpdatedAt: false, paged: true, sortFields: ["due_on", "title", "created_at"], defaultSort: { field: "due_on", order: "asc" }, customFieldsOnList: false, noun: "Project" },
  users: { updatedSince: false, hasUpdatedAt: false, paged: true, sortFields: ["first_name", "last_name", "email", "function"], defaultSort: { field: "first_name", order: "asc" }, customFieldsOnList: false, noun: "User" },
  // teamleadercrm/api src/12-nextgen-projects/projects.apib: ids, no updated_since; `includes=legacy_project,custom_fields`.
  projects_v2: {
    endpoint: "projects-v2/projects",
    updatedSince: false,
    hasUpdatedAt: false,
    paged: true,
    sortFields: ["amount_billed", "amount_paid", "amount_unbilled", "cost", "end_date", "external_budget_spent", "external_budget", "internal_budget", "margin", "price", "project_key", "start_date", "status", "time_budget", "time_estimated", "time_tracked", "title"],
    defaultSort: { field: "project_key", order: "desc" },
    customFieldsOnList: true,
    noun: "Project",
  },
  // src/03-deals/deals.apib: ids, updated_since, sort created_at or weighted_value (created_at desc by default).
  deals: { updatedSince: true, hasUpdatedAt: true, paged: true, sortFields: ["created_at", "weighted_value"], defaultSort: { field: "created_at", order: "desc" }, customFieldsOnList: true, noun: "Deal" },
  // src/03-deals/quotations.apib: ids and page only. The order without a sort is not documented: by creation here.
  quotations: { updatedSince: false, hasUpdatedAt: true, paged: true, sortFields: [], defaultSort: { field: "created_at", order: "asc" }, customFieldsOnList: false, noun: "Quotation" },
  // src/09-time-tracking/time-tracking.apib: ids, started_/ended_ filters, sort starts_on (asc by default).
  time_tracking: { endpoint: "timeTracking", updatedSince: false, hasUpdatedAt: false, paged: true, sortFields: ["starts_on"], defaultSort: { field: "starts_on", order: "asc" }, customFieldsOnList: false, noun: "Time tracking" },
  // src/08-tasks/tasks.apib: ids, page, sort due_on (asc by default).
  tasks: { updatedSince: false, hasUpdatedAt: false, paged: true, sortFields: ["due_on"], defaultSort: { field: "due_on", order: "asc" }, customFieldsOnList: false, noun: "Task" },
  // src/06-products/products.apib: ids, term, updated_since; no page and no sort are documented, so all of it comes every time.
  products: { updatedSince: true, hasUpdatedAt: true, paged: false, sortFields: [], defaultSort: { field: "added_at", order: "asc" }, customFieldsOnList: false, noun: "Product" },
};

/** Generated history ends here; changes made while the sandbox runs carry the real time. */
const HISTORY_END = Date.UTC(2025, 0, 1);
const HISTORY_SPAN = 4 * 365 * 24 * 3600 * 1000;

interface ResourceState {
  /** Records ever made: the initial volume plus those added since. */
  count: number;
  initial: number;
  /** index → version, for records changed since they were made. */
  versions: Map<number, number>;
  /** index → epoch ms of the last change, for changed and added records. */
  changedAt: Map<number, number>;
  /** index → epoch ms when an added record was made. */
  addedAt: Map<number, number>;
  deleted: Set<number>;
  ids?: string[];
  byId?: Map<string, number>;
  sorted: Map<string, Int32Array>;
}

export interface ListQuery {
  ids?: string[];
  updatedSince?: number;
  sort?: { field: string; order: "asc" | "desc" };
  /** Both 1-based; absent for an unpaged listing. */
  page?: { size: number; number: number };
  customFields?: boolean;
}

export interface DataSnapshot {
  seed: string;
  resources: Record<string, { count: number; initial: number; versions: Array<[number, number]>; changedAt: Array<[number, number]>; addedAt: Array<[number, number]>; deleted: number[] }>;
  changeCounter: number;
}

export class TeamleaderData {
  private readonly state = new Map<TeamleaderResourceName, ResourceState>();
  private changeCounter = 0;

  constructor(
    private seed = "gluework",
    volumes: Volumes = DEFAULT_VOLUMES,
    private readonly now: () => number = Date.now,
  ) {
    this.reset(volumes, seed);
  }

  /** Starts over with `volumes` records per resource (missing ones keep the defaults). */
  reset(volumes: Volumes = {}, seed = this.seed): void {
    this.seed = seed;
    this.changeCounter = 0;
    for (const resource of TEAMLEADER_RESOURCES) {
      const volume = Math.max(0, Math.floor(volumes[resource] ?? DEFAULT_VOLUMES[resource]));
      this.state.set(resource, { count: volume, initial: volume, versions: new Map(), changedAt: new Map(), addedAt: new Map(), deleted: new Set(), sorted: new Map() });
    }
  }

  /** How many records a listing without filters returns. */
  live(resource: TeamleaderResourceName): number {
    const s = this.get(resource);
    return s.count - s.deleted.size;
  }

  /** Every live id (for tests: what a complete sync must hold). */
  liveIds(resource: TeamleaderResourceName): string[] {
    const s = this.get(resource);
    const out: string[] = [];
    for (let i = 0; i < s.count; i++) if (!s.deleted.has(i)) out.push(this.id(resource, i));
    return out;
  }

  /** Changes `count` live records now (new content, new updated_at); returns their ids. */
  change(resource: TeamleaderResourceName, count: number): string[] {
    const s = this.get(resource);
    const picked = this.pick(resource, count);
    const at = this.stamp();
    for (const i of picked) {
      s.versions.set(i, (s.versions.get(i) ?? 0) + 1);
      s.changedAt.set(i, at);
    }
    this.touched(s);
    return picked.map((i) => this.id(resource, i));
  }

  /** Adds `count` new records now; returns their ids. */
  add(resource: TeamleaderResourceName, count: number): string[] {
    const s = this.get(resource);
    const at = this.stamp();
    const ids: string[] = [];
    for (let n = 0; n < count; n++) {
      const i = s.count++;
      s.addedAt.set(i, at);
      s.changedAt.set(i, at);
      ids.push(this.id(resource, i));
    }
    this.touched(s);
    return ids;
  }

  /** Deletes `count` live records (Teamleader keeps no tombstone: they just stop being listed). */
  remove(resource: TeamleaderResourceName, count: number): string[] {
    const s = this.get(resource);
    const picked = this.pick(resource, count);
    for (const i of picked) s.deleted.add(i);
    this.touched(s);
    return picked.map((i) => this.id(resource, i));
  }

  /** Deletes the records with these ids. */
  removeIds(resource: TeamleaderResourceName, ids: readonly string[]): void {
    const s = this.get(resource);
    for (const id of ids) {
      const i = this.indexOf(resource, id);
      if (i !== undefined) s.deleted.add(i);
    }
    this.touched(s);
  }

  /** The records a list call returns, in order. */
  list(resource: TeamleaderResourceName, query: ListQuery): Json[] {
    const s = this.get(resource);
    const behaviour = BEHAVIOUR[resource];
    const sort = query.sort ?? behaviour.defaultSort;
    let order: ArrayLike<number> = this.sortedIndexes(resource, sort.field, sort.order);
    if (query.ids) {
      const wanted = new Set(query.ids.map((id) => this.indexOf(resource, id)).filter((i): i is number => i !== undefined));
      order = Array.from(order).filter((i) => wanted.has(i));
    }
    if (query.updatedSince !== undefined) {
      const since = query.updatedSince;
      order = Array.from(order).filter((i) => this.updatedAt(s, i) >= since);
    }
    const from = query.page ? (query.page.number - 1) * query.page.size : 0;
    const to = query.page ? from + query.page.size : order.length;
    const out: Json[] = [];
    for (let k = from; k < Math.min(to, order.length); k++) out.push(this.record(resource, order[k]!, query.customFields === true));
    return out;
  }

  /** One record as `.info` returns it (custom fields included), or undefined when it does not exist. */
  info(resource: TeamleaderResourceName, id: string): Json | undefined {
    const i = this.indexOf(resource, id);
    if (i === undefined || this.get(resource).deleted.has(i)) return undefined;
    return this.record(resource, i, true);
  }

  snapshot(): DataSnapshot {
    const resources: DataSnapshot["resources"] = {};
    for (const [name, s] of this.state) {
      resources[name] = { count: s.count, initial: s.initial, versions: [...s.versions], changedAt: [...s.changedAt], addedAt: [...s.addedAt], deleted: [...s.deleted] };
    }
    return { seed: this.seed, resources, changeCounter: this.changeCounter };
  }

  restore(data: DataSnapshot): void {
    this.seed = data.seed;
    this.changeCounter = data.changeCounter ?? 0;
    for (const resource of TEAMLEADER_RESOURCES) {
      const r = data.resources?.[resource];
      if (!r) continue;
      this.state.set(resource, {
        count: r.count,
        initial: r.initial,
        versions: new Map(r.versions),
        changedAt: new Map(r.changedAt),
        addedAt: new Map(r.addedAt),
        deleted: new Set(r.deleted),
        sorted: new Map(),
      });
    }
  }

  /** The record's `updated_at` as epoch ms (kept for every resource, listed only where Teamleader lists it). */
  private updatedAt(s: ResourceState, i: number): number {
    return s.changedAt.get(i) ?? this.baseUpdated(i);
  }

  private get(resource: TeamleaderResourceName): ResourceState {
    const s = this.state.get(resource);
    if (!s) throw new Error(`the sandbox has no Teamleader resource ${resource}`);
    return s;
  }

  private touched(s: ResourceState): void {
    s.sorted.clear();
    this.changeCounter++;
  }

  /** Teamleader's timestamps have whole seconds. */
  private stamp(): number {
    return Math.floor(this.now() / 1000) * 1000;
  }

  private pick(resource: TeamleaderResourceName, count: number): number[] {
    const s = this.get(resource);
    const live = s.count - s.deleted.size;
    const wanted = Math.min(count, live);
    const random = prng(`${this.seed}/${resource}/pick/${this.changeCounter}`);
    const picked = new Set<number>();
    while (picked.size < wanted) {
      const i = Math.floor(random() * s.count);
      if (!s.deleted.has(i)) picked.add(i);
    }
    return [...picked].sort((a, b) => a - b);
  }

  id(resource: TeamleaderResourceName, i: number): string {
    const s = this.get(resource);
    if (s.ids && i < s.ids.length) return s.ids[i]!;
    const hex = createHash("sha1").update(`${this.seed}/${resource}/${i}`).digest("hex");
    // A UUID v4 layout, as Teamleader's ids have.
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-${((parseInt(hex[16]!, 16) & 3) | 8).toString(16)}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
  }

  private indexOf(resource: TeamleaderResourceName, id: string): number | undefined {
    const s = this.get(resource);
    if (!s.byId || s.byId.size < s.count) {
      s.ids = Array.from({ length: s.count }, (_, i) => (s.ids && i < s.ids.length ? s.ids[i]! : this.id(resource, i)));
      s.byId = new Map(s.ids.map((id, i) => [id, i]));
    }
    return s.byId.get(id);
  }

  private sortedIndexes(resource: TeamleaderResourceName, field: string, order: "asc" | "desc"): Int32Array {
    const s = this.get(resource);
    const cacheKey = `${field}:${order}`;
    const cached = s.sorted.get(cacheKey);
    if (cached) return cached;
    const indexes: number[] = [];
    for (let i = 0; i < s.count; i++) if (!s.deleted.has(i)) indexes.push(i);
    const key = this.sortKey(resource, field);
    const keys = new Map(indexes.map((i) => [i, key(i)]));
    const sign = order === "desc" ? -1 : 1;
    indexes.sort((a, b) => {
      const ka = keys.get(a)!;
      const kb = keys.get(b)!;
      if (ka < kb) return -sign;
      if (ka > kb) return sign;
      return a - b; // ties in a stable order, so paging is repeatable
    });
    const result = Int32Array.from(indexes);
    s.sorted.set(cacheKey, result);
    return result;
  }

  private sortKey(resource: TeamleaderResourceName, field: string): (i: number) => string | number {
    const s = this.get(resource);
    if (field === "updated_at") return (i) => this.updatedAt(s, i);
    if (field === "added_at" || field === "created_at") return (i) => s.addedAt.get(i) ?? this.baseAdded(i);
    // Sorted on starts_on, listed as started_on (time tracking, as documented).
    const listed = field === "name" && resource === "contacts" ? "last_name" : field === "starts_on" ? "started_on" : field;
    return (i) => {
      const value = this.record(resource, i, false)[listed];
      if (typeof value === "number") return value;
      // Money and durations sort by their amount or value.
      if (value && typeof value === "object") return Number((value as Json).amount ?? (value as Json).value ?? 0);
      return String(value ?? "").toLocaleLowerCase("en");
    };
  }

  private baseAdded(i: number): number {
    return secondsOf(HISTORY_END - Math.floor(prng(`${this.seed}/added/${i}`)() * HISTORY_SPAN));
  }

  private baseUpdated(i: number): number {
    const added = this.baseAdded(i);
    return secondsOf(added + Math.floor(prng(`${this.seed}/updated/${i}`)() * (HISTORY_END - added)));
  }

  private record(resource: TeamleaderResourceName, i: number, customFields: boolean): Json {
    const s = this.get(resource);
    const version = s.versions.get(i) ?? 0;
    const r = prng(`${this.seed}/${resource}/${i}/${version}`);
    const id = this.id(resource, i);
    const added = iso(s.addedAt.get(i) ?? this.baseAdded(i));
    const updated = iso(this.updatedAt(s, i));
    const user = () => ({ type: "user", id: this.id("users", Math.floor(r() * Math.max(1, this.get("users").initial))) });
    const department = () => ({ type: "department", id: this.id("departments", Math.floor(r() * Math.max(1, this.get("departments").initial))) });
    const company = () => ({ type: "company", id: this.id("companies", Math.floor(r() * Math.max(1, this.get("companies").initial))) });
    const custom = () => [
      { definition: { type: "customFieldDefinition", id: "0f6e7b62-5a4d-4c1f-9c1e-1a2b3c4d5e6f" }, value: pick(r, ["Gold", "Silver", "Bronze", null]) },
      { definition: { type: "customFieldDefinition", id: "7d3c2b1a-6f5e-4d4c-8b3a-2f1e0d9c8b7a" }, value: Math.floor(r() * 1000) },
    ];
    switch (resource) {
      case "companies": {
        const name = companyName(r);
        const slug = asciiSlug(name);
        const record: Json = {
          id,
          name,
          business_type: { type: "businessType", id: "fd48d4a3-b9dc-4eac-8071-5889c9f21e5d" },
          status: r() < 0.95 ? "active" : "deactivated",
          vat_number: `BE0${String(100_000_000 + Math.floor(r() * 899_999_999))}`,
          national_identification_number: null,
          emails: [{ type: "primary", email: `info@${slug}.example` }, ...(r() < 0.5 ? [{ type: "invoicing", email: `invoices@${slug}.example` }] : [])],
          telephones: [{ type: "phone", number: `+32 ${2 + Math.floor(r() * 8)} ${String(Math.floor(r() * 1e7)).padStart(7, "0")}` }],
          website: `https://www.${slug}.example`,
          primary_address: address(r),
          iban: `BE${String(10 + Math.floor(r() * 89))}${String(Math.floor(r() * 1e12)).padStart(12, "0")}`,
          bic: pick(r, ["GEBABEBB", "KREDBEBB", "BBRUBEBB", "GKCCBEBB"]),
          language: pick(r, ["nl", "fr", "en", "de"]),
          preferred_currency: "EUR",
          payment_term: { type: pick(r, ["cash", "end_of_month", "after_invoice_date"]), days: pick(r, [0, 14, 30, 60]) },
          responsible_user: user(),
          tags: pickSome(r, ["prospect", "customer", "partner", "vip", "b2b", "export"]),
          marketing_mails_consent: r() < 0.4,
          remarks: pick(r, [null, "Met at the expo, 2024", 'Prefers "formal" letters', "Zahlung per Überweisung; Rückfragen an Frau Müller", "Contact via l'accueil, pas avant 9h"]),
          added_at: added,
          updated_at: updated,
          web_url: `https://focus.teamleader.eu/company_detail.php?id=${id}`,
        };
        if (customFields) record.custom_fields = custom();
        return record;
      }
      case "contacts": {
        const first = pick(r, FIRST_NAMES);
        const last = pick(r, LAST_NAMES);
        const record: Json = {
          id,
          first_name: first,
          last_name: last,
          status: r() < 0.97 ? "active" : "deactivated",
          emails: [{ type: "primary", email: `${asciiSlug(first)}.${asciiSlug(last)}${i}@mail.example` }],
          telephones: [{ type: "mobile", number: `+32 4${String(Math.floor(r() * 1e8)).padStart(8, "0")}` }],
          website: null,
          primary_address: address(r),
          gender: pick(r, ["female", "male", "non_binary", "prefers_not_to_say", "unknown"]),
          birthdate: r() < 0.5 ? `19${50 + Math.floor(r() * 50)}-0${1 + Math.floor(r() * 9)}-1${Math.floor(r() * 9)}` : null,
          iban: null,
          bic: null,
          national_identification_number: null,
          language: pick(r, ["nl", "fr", "en", "de"]),
          payment_term: null,
          invoicing_preferences: { electronic_invoicing_address: null },
          companies: r() < 0.7 ? [{ position: pick(r, ["CEO", "Sales, EMEA", "Boekhouder", "Responsable d'achat"]), decision_maker: r() < 0.3, company: company() }] : [],
          tags: pickSome(r, ["newsletter", "lead", "customer"]),
          marketing_mails_consent: r() < 0.4,
          added_at: added,
          updated_at: updated,
          web_url: `https://focus.teamleader.eu/contact_detail.php?id=${id}`,
        };
        if (customFields) record.custom_fields = custom();
        return record;
      }
      case "departments":
        return {
          id,
          name: i === 0 ? "Hoofdzetel, Gent" : `${pick(r, ["Filiale", "Succursale", "Niederlassung"])} ${pick(r, CITIES).city}`,
          vat_number: `BE0${String(100_000_000 + Math.floor(r() * 899_999_999))}`,
          currency: "EUR",
          emails: [{ type: "primary", email: `dept${i}@company.example` }],
          status: "active",
        };
      case "events": {
        const start = secondsOf(HISTORY_END - Math.floor(r() * 365 * 24 * 3600 * 1000));
        return {
          id,
          creator: user(),
          todo: null,
          activity_type: { type: "activityType", id: "7b6d7b0c-9c2a-4f3e-8a1b-2c3d4e5f6a7b" },
          title: pick(r, ["Kick-off, phase 1", 'Demo "Focus" for the board', "Réunion trimestrielle", "Jahresgespräch mit Müller"]),
          description: r() < 0.5 ? "Agenda: 1) status, 2) next steps" : null,
          starts_at: iso(start),
          ends_at: iso(start + 3600_000),
          location: pick(r, CITIES).city,
          links: [{ type: "company", id: company().id }],
        };
      }
      case "invoices": {
        const booked = r() < 0.9;
        const amount = Math.round(r() * 1_000_000) / 100;
        return {
          id,
          department: department(),
          invoice_number: booked ? `2024 / ${i + 1}` : null,
          invoice_date: booked ? added.slice(0, 10) : null,
          status: booked ? pick(r, ["outstanding", "matched"]) : "draft",
          due_on: booked ? added.slice(0, 10) : null,
          paid: r() < 0.6,
          paid_at: null,
          sent: booked,
          purchase_order_number: r() < 0.3 ? `PO-${Math.floor(r() * 1e5)}` : null,
          payment_reference: booked ? `+++${String(Math.floor(r() * 1e3)).padStart(3, "0")}/${String(Math.floor(r() * 1e4)).padStart(4, "0")}/${String(Math.floor(r() * 1e5)).padStart(5, "0")}+++` : null,
          invoicee: { name: companyName(r), vat_number: null, customer: company(), for_attention_of: null },
          total: {
            tax_exclusive: { amount, currency: "EUR" },
            tax_inclusive: { amount: Math.round(amount * 121) / 100, currency: "EUR" },
            payable: { amount: Math.round(amount * 121) / 100, currency: "EUR" },
            due: { amount: Math.round(amount * 121) / 100, currency: "EUR" },
          },
          created_at: added,
          updated_at: updated,
          web_url: `https://focus.teamleader.eu/invoice_detail.php?id=${id}`,
          file: null,
          deal: null,
        };
      }
      case "projects":
        return {
          id,
          reference: `PRO-${i + 1}`,
          title: pick(r, ["New company website", "Migratie, fase 2", 'Project "Phoenix"', "Refonte de l'intranet", "Umstellung auf E-Rechnung"]),
          description: r() < 0.5 ? "Scope agreed with the customer; see the offer." : "",
          status: pick(r, ["active", "on_hold", "done", "cancelled"]),
          customer: company(),
          starts_on: added.slice(0, 10),
          due_on: iso(Date.parse(added) + Math.floor(r() * 200) * 86_400_000).slice(0, 10),
          source: null,
          created_at: added,
        };
      case "projects_v2": {
        const price = Math.round(r() * 5_000_000) / 100;
        const record: Json = {
          id,
          project_key: i + 1,
          title: pick(r, ["Nieuwe website", "Migration ERP, phase 2", 'Project "Phoenix"', "Refonte de l'intranet", "Umstellung auf E-Rechnung"]),
          description: r() < 0.5 ? "Scope agreed with the customer." : null,
          status: r() < 0.7 ? "open" : "closed",
          billing_method: pick(r, ["time_and_materials", "fixed_price", "non_billable"]),
          time_budget: r() < 0.5 ? { value: 3600 * Math.floor(1 + r() * 200), unit: "seconds" } : null,
          time_tracked: { value: 60 * Math.floor(r() * 20_000), unit: "seconds" },
          amount_billed: { amount: Math.round(price * r() * 100) / 100, currency: "EUR" },
          price: { amount: price, currency: "EUR" },
          start_date: added.slice(0, 10),
          end_date: r() < 0.6 ? iso(Date.parse(added) + Math.floor(r() * 300) * 86_400_000).slice(0, 10) : null,
          company_entity: department(),
          owners: [user()],
          color: pick(r, ["#00B2B2", "#992600", "#ED9E00", "#0071F2"]),
          assignees: [{ assignee: user(), assign_type: "manual" }],
          customers: [company()],
          deals: [],
          quotations: [],
        };
        if (customFields) record.custom_fields = custom();
        return record;
      }
      case "deals": {
        const value = Math.round(r() * 2_000_000) / 100;
        const probability = pick(r, [0.1, 0.25, 0.5, 0.75, 0.9]);
        const status = pick(r, ["new", "open", "open", "won", "lost"]);
        const record: Json = {
          id,
          title: pick(r, ["Onderhoudscontract 2025", "Website, phase 2", 'Offre "Premium"', "Lizenzverlängerung"]),
          summary: r() < 0.5 ? "Follow up after the demo" : null,
          reference: `2024/${i + 1}`,
          status,
          lead: { customer: company(), contact_person: null },
          department: department(),
          estimated_value: { amount: value, currency: "EUR" },
          estimated_closing_date: iso(Date.parse(added) + Math.floor(r() * 120) * 86_400_000).slice(0, 10),
          estimated_probability: probability,
          weighted_value: { amount: Math.round(value * probability * 100) / 100, currency: "EUR" },
          purchase_order_number: null,
          current_phase: { type: "dealPhase", id: "521a331d-60d1-4920-bde3-ccd01d09f9f1" },
          responsible_user: user(),
          closed_at: status === "won" || status === "lost" ? updated : null,
          source: null,
          lost_reason: status === "lost" ? { reason: null, remark: "Too expensive" } : null,
          created_at: added,
          updated_at: updated,
          web_url: `https://focus.teamleader.eu/sale_detail.php?id=${id}`,
          currency_exchange_rate: { from: "EUR", to: "EUR", rate: 1 },
          pipeline: { type: "dealPipeline", id: "4e81f3c4-7dca-44cb-b126-6158bec392a2" },
        };
        if (customFields) record.custom_fields = custom();
        return record;
      }
      case "quotations": {
        const amount = Math.round(r() * 1_000_000) / 100;
        return {
          id,
          deal: { type: "deal", id: this.id("deals", Math.floor(r() * Math.max(1, this.get("deals").initial))) },
          currency_exchange_rate: { from: "EUR", to: "EUR", rate: 1 },
          total: {
            tax_exclusive: { amount, currency: "EUR" },
            tax_inclusive: { amount: Math.round(amount * 121) / 100, currency: "EUR" },
            taxes: [{ rate: 0.21, taxable: { amount, currency: "EUR" }, tax: { amount: Math.round(amount * 21) / 100, currency: "EUR" } }],
            purchase_price: null,
          },
          created_at: added,
          updated_at: updated,
          status: pick(r, ["open", "accepted", "expired", "rejected", "closed"]),
          name: pick(r, ["Webdevelopment", "Onderhoud", "Maintenance annuelle"]),
        };
      }
      case "time_tracking": {
        const start = secondsOf(HISTORY_END - Math.floor(r() * 365 * 24 * 3600 * 1000));
        const duration = 60 * Math.floor(5 + r() * 480);
        return {
          id,
          user: user(),
          work_type: { type: "workType", id: "8a146eda-c9af-4b11-b63a-ddac47bb254d" },
          started_on: iso(start).slice(0, 10),
          started_at: iso(start),
          ended_at: iso(start + duration * 1000),
          duration,
          description: pick(r, ["Analyse", "Vergadering met klant", "Développement", "Fehlersuche"]),
          subject: r() < 0.6 ? company() : null,
          invoiceable: r() < 0.7,
          billing_info: null,
        };
      }
      case "tasks": {
        const done = r() < 0.4;
        return {
          id,
          title: pick(r, ["Review code changes", "Offerte opvolgen", "Relancer le client", "Rechnung prüfen"]),
          description: r() < 0.5 ? "See the notes of the last meeting" : "",
          completed: done,
          completed_at: done ? updated : null,
          due_on: iso(Date.parse(added) + Math.floor(r() * 60) * 86_400_000).slice(0, 10),
          added_at: added,
          estimated_duration: { unit: "min", value: 15 * Math.floor(1 + r() * 16) },
          work_type: null,
          assignee: user(),
          customer: r() < 0.6 ? company() : null,
          milestone: null,
          deal: null,
          project: null,
          ticket: null,
          priority: pick(r, ["A", "B", "C", "D"]),
        };
      }
      case "products":
        return {
          id,
          name: pick(r, ["Koffiebonen, 1 kg", "Consultance (uur)", 'Licence "Pro"', "Wartungspaket"]),
          description: r() < 0.5 ? "**Bestseller** since 2021" : null,
          code: `PRD-${String(i + 1).padStart(5, "0")}`,
          unit: { type: "unitOfMeasure", id: "f79d3e04-b8dc-0637-8f18-ca7c8fc63b71" },
          added_at: added,
          updated_at: updated,
          configuration: null,
        };
      case "users": {
        const first = pick(r, FIRST_NAMES);
        const last = pick(r, LAST_NAMES);
        return {
          id,
          account: { type: "account", id: "acc-1" },
          first_name: first,
          last_name: last,
          email: `${asciiSlug(first)}.${asciiSlug(last)}${i}@company.example`,
          email_verification_status: "confirmed",
          telephones: [],
          language: pick(r, ["nl", "fr", "en"]),
          function: pick(r, ["Sales", "Support", "Boekhouding", "Développeur"]),
          status: "active",
          teams: [],
        };
      }
    }
  }
}

const FIRST_NAMES = ["Anna", "Bram", "Chloé", "Dirk", "Élodie", "Frank", "Griet", "Hélène", "Jürgen", "Katrien", "Łukasz", "Marie-José", "Noor", "Olivier", "Søren", "Zoë"];
const LAST_NAMES = ["Peeters", "Janssens", "Maes", "Dubois", "Müller", "O'Brien", "Van den Broeck", "De Smet", "Lefèvre", "Nowak", "Šimunović", "Çelik", "Ødegaard"];
const COMPANY_WORDS = ["Atelier", "Bakkerij", "Brasserie", "Garage", "Drukkerij", "Société", "Studio", "Verhuizingen", "Bureau", "Café"];
const COMPANY_NAMES = ["Het Anker", "L'Étoile", "Zonnebloem", "Müller & Söhne", "De Gouden Leeuw", "Łąka", "Nordlys", "Les Trois Rois", "Blauwe Vogel", "Kaffeehaus Zürich"];
const CITIES = [
  { city: "Gent", postal_code: "9000", country: "BE" },
  { city: "Antwerpen", postal_code: "2000", country: "BE" },
  { city: "Liège", postal_code: "4000", country: "BE" },
  { city: "Bruxelles", postal_code: "1000", country: "BE" },
  { city: "Köln", postal_code: "50667", country: "DE" },
  { city: "Lille", postal_code: "59000", country: "FR" },
];

function companyName(r: () => number): string {
  const base = `${pick(r, COMPANY_WORDS)} ${pick(r, COMPANY_NAMES)}`;
  const form = pick(r, ["", " BV", " NV", " SRL", " GmbH", ", Gent", ' "Since 1921"']);
  return `${base}${form}`;
}

function address(r: () => number): Json {
  const place = pick(r, CITIES);
  return { line_1: `${pick(r, ["Kerkstraat", "Rue de l'Église", "Hauptstraße", "Veldstraat"])} ${1 + Math.floor(r() * 200)}`, postal_code: place.postal_code, city: place.city, country: place.country };
}

function asciiSlug(text: string): string {
  return text
    .normalize("NFKD")
    .replace(/[^A-Za-z0-9]+/g, "-")
    .replace(/^-|-$/g, "")
    .toLowerCase();
}

function pick<T>(r: () => number, items: readonly T[]): T {
  return items[Math.floor(r() * items.length)]!;
}

function pickSome(r: () => number, items: readonly string[]): string[] {
  return items.filter(() => r() < 0.25);
}

function secondsOf(ms: number): number {
  return Math.floor(ms / 1000) * 1000;
}

/** Teamleader's timestamp format: whole seconds, `+00:00` rather than `Z`. */
export function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, "+00:00");
}

/** A small seeded generator (mulberry32 over a string hash): the same seed gives the same records. */
function prng(seed: string): () => number {
  let h = 1779033703 ^ seed.length;
  for (let i = 0; i < seed.length; i++) {
    h = Math.imul(h ^ seed.charCodeAt(i), 3432918353);
    h = (h << 13) | (h >>> 19);
  }
  let a = h >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
