// Microsoft Graph shapes this package reads, from the v1.0 reference (graph-ooo.md §1–2).

/** A date and time in a named zone: IANA ("Europe/Brussels") or Windows ("Romance Standard Time"). */
export interface DateTimeTimeZone {
  dateTime: string;
  timeZone: string;
}

/** `…/mailboxSettings/automaticRepliesSetting`. Enum casing varies between answers: compare case-insensitively. */
export interface AutomaticRepliesSetting {
  status: string;
  externalAudience?: string;
  scheduledStartDateTime?: DateTimeTimeZone;
  scheduledEndDateTime?: DateTimeTimeZone;
  internalReplyMessage?: string;
  externalReplyMessage?: string;
}

export interface GraphUser {
  id: string;
  userPrincipalName?: string;
  mail?: string | null;
  displayName?: string;
}

export interface GraphErrorBody {
  error: { code: string; message: string; innerError?: Record<string, unknown> };
}

export interface BatchRequest {
  id: string;
  method: "GET";
  url: string;
}

export interface BatchResponse<T = unknown> {
  id: string;
  status: number;
  headers?: Record<string, string>;
  body?: T | GraphErrorBody;
}
