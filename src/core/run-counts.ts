/**
 * What one run did, counted as it happens. The HTTP client and the token sources add to the
 * object a run hands them (`HttpClient.withCounts`, `HttpRequest.counts`); the run's own code adds
 * its rows and pages. A plain object passed down, rather than async context: the run owns it, and
 * nothing is counted for work that did not ask to be.
 */
export interface RunCounts {
  /** Records the run moved: calls exported, records synced, users read or provisioned, mails sent. */
  rows: number;
  /** Pages of a paged API read. */
  pages: number;
  /** HTTP requests sent to the provider's API (each try counts; token requests do not). */
  requests: number;
  /** Answers 429 Too Many Requests, each one, waited out or not. */
  http429: number;
  /** Requests sent again after a network error or a 5xx answer (429 waits are counted in `http429`). */
  retries: number;
  /** Access tokens this run had to ask the provider for (a refresh, or a new app token). */
  tokenRefreshes: number;
}

/** A fresh set of counts, all zero. */
export function runCounts(): RunCounts {
  return { rows: 0, pages: 0, requests: 0, http429: 0, retries: 0, tokenRefreshes: 0 };
}
