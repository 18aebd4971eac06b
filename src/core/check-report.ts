import { errorMessage } from "./errors";

/**
 * The report of a connection test: one line per check, each passed, failed (with the reason in
 * plain words and the fix) or skipped (with why). Every check module builds one through
 * `ConnectionChecks`; the editor's Test connection button and a `test` message show it.
 */
export type CheckOutcome = "passed" | "failed" | "skipped";

export interface CheckLine {
  check: string;
  outcome: CheckOutcome;
  /** What was found (passed), what went wrong (failed) or why it did not run (skipped). */
  detail?: string;
  /** What to do about a failure. */
  fix?: string;
}

export interface ConnectionReport {
  /** The config node type tested. */
  type: string;
  /** True when no check failed. */
  ok: boolean;
  checks: CheckLine[];
}

/** A check failed for a reason the check module can name, with the fix. */
export class CheckFailure extends Error {
  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(message);
    this.name = "CheckFailure";
  }
}

/** A check that does not apply here, thrown from inside a check. */
export class CheckSkipped extends Error {}

/** How long a whole test may take before it answers with what it has (the route answers within 15 s). */
export const TEST_DEADLINE_MS = 13_000;

/**
 * The checks of one test, run in order. `run` records a line per check; a check that has not
 * finished by the deadline is recorded as failed, and the report answers at once.
 */
export class ConnectionChecks {
  readonly lines: CheckLine[] = [];
  private readonly controller = new AbortController();
  private readonly timer: NodeJS.Timeout;

  constructor(deadlineMs = TEST_DEADLINE_MS) {
    this.timer = setTimeout(() => this.controller.abort(new Error("the test ran out of time")), deadlineMs);
    this.timer.unref();
  }

  /** Aborted at the deadline: pass it to requests that take one. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  pass(check: string, detail?: string): void {
    this.lines.push({ check, outcome: "passed", ...(detail ? { detail } : {}) });
  }

  fail(check: string, detail: string, fix: string): void {
    this.lines.push({ check, outcome: "failed", detail, fix });
  }

  skip(check: string, detail: string): void {
    this.lines.push({ check, outcome: "skipped", detail });
  }

  /**
   * Runs one check: what it returns is the passed line's detail; a CheckFailure or any error is a
   * failed line (its fix, else `fix`); CheckSkipped a skipped one. The value, or undefined.
   */
  async run<T>(check: string, fix: string, work: () => Promise<T>, detail?: (value: T) => string | undefined): Promise<T | undefined> {
    if (this.signal.aborted) {
      this.skip(check, "the test ran out of time before this check");
      return undefined;
    }
    try {
      const value = await Promise.race([work(), this.deadline()]);
      this.pass(check, detail ? detail(value) : typeof value === "string" ? value : undefined);
      return value;
    } catch (err) {
      if (err instanceof CheckSkipped) this.skip(check, err.message);
      else if (this.signal.aborted && !(err instanceof CheckFailure)) this.fail(check, "no answer in the time a test may take (it answers within 15 s)", `check that the host is right and reachable from Node-RED; if it is, ${fix}`);
      else this.fail(check, errorMessage(err), err instanceof CheckFailure ? err.fix : fix);
      return undefined;
    }
  }

  /** Every check named here is skipped because `reason`. */
  skipAll(checks: string[], reason: string): void {
    for (const check of checks) this.skip(check, reason);
  }

  report(type: string): ConnectionReport {
    clearTimeout(this.timer);
    return { type, ok: !this.lines.some((l) => l.outcome === "failed"), checks: this.lines };
  }

  private deadline(): Promise<never> {
    const signal = this.signal;
    return new Promise<never>((_resolve, reject) => {
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
  }
}
