// GoTo API shapes as far as the reference notes document them (goto-apis.md §2.3, §2.5). Fields a
// response may leave out are optional; unknown fields are ignored, as GoTo asks its clients to.

/** A party of a call: `caller` or `callee`. */
export interface CallParty {
  name?: string | null;
  number?: string | null;
}

/** One user of `GET /call-reports/v1/reports/user-activity`. */
export interface UserActivitySummary {
  userId: string;
  userName?: string | null;
  dataValues?: {
    inboundVolume?: number;
    inboundDuration?: number;
    outboundVolume?: number;
    outboundDuration?: number;
    /** Calls in the window (inbound + outbound). */
    volume?: number;
    totalDuration?: number;
    averageDuration?: number;
  };
}

/** One call of `GET /call-reports/v1/reports/user-activity/{userId}`. */
export interface UserActivityCall {
  startTime?: string | null;
  endTime?: string | null;
  answerTime?: string | null;
  direction?: string | null;
  /** A SIP cause code (16 normal clearing, 17 busy, 19 no answer, 21 rejected) as far as seen. */
  disposition?: string | number | null;
  /** Milliseconds, as the original export read it (one third-party note says seconds: unverified). */
  duration?: number | null;
  queue?: { name?: string | null } | null;
  caller?: CallParty | null;
  callee?: CallParty | null;
}

/**
 * The page shape of every Call Reports list: items, paged by `page` (from 0) and `pageSize` as far
 * as seen; GoTo's newer report APIs page with `nextPageMarker` → `pageMarker` instead, followed
 * whenever an answer carries one.
 */
export interface CallReportsPage<T> {
  items?: T[];
  nextPageMarker?: string | null;
}

/** One summary of `GET /call-events-report/v1/report-summaries`. */
export interface CallEventsSummary {
  conversationSpaceId: string;
  callCreated?: string | null;
  callAnswered?: string | null;
  callEnded?: string | null;
  direction?: string | null;
  callerOutcome?: string | null;
  caller?: (CallParty & { type?: { extensionNumber?: string | null } | null }) | null;
  participants?: Array<CallParty & { type?: { extensionNumber?: string | null } | null }> | null;
}

/** The page shape of the Call Events Report: a marker to the next page while there is one. */
export interface CallEventsPage {
  items?: CallEventsSummary[];
  nextPageMarker?: string | null;
}

/**
 * One row of a day's call log, with the columns of the original export (goto-apis.md §3) and in
 * its words: `duration` as H:MM:SS, the parties flattened.
 */
export interface CallLogRow {
  user: string;
  queue: string;
  direction: string;
  disposition: string;
  startTime: string;
  endTime: string;
  answerTime: string;
  duration: string;
  callerName: string;
  callerNumber: string;
  calleeName: string;
  calleeNumber: string;
}

export const CALL_LOG_COLUMNS: ReadonlyArray<keyof CallLogRow> = [
  "user",
  "queue",
  "direction",
  "disposition",
  "startTime",
  "endTime",
  "answerTime",
  "duration",
  "callerName",
  "callerNumber",
  "calleeName",
  "calleeNumber",
];
