import { inspect } from "node:util";
import { redact } from "./redact";

export interface PipelineErrorOptions {
  /** Short status text for the node (a few words). */
  status?: string;
  /** A stable code a flow can switch on (`msg.error.code` in a Catch node). */
  code?: string;
  cause?: unknown;
  /** The HTTP status to answer with when the error ends up in an `http response`. */
  httpStatus?: number;
  /**
   * The work was done but for some items (a batch with a refused user): Catch still sees it, and
   * the node's status is a warning rather than a failure.
   */
  partial?: boolean;
}

/**
 * Every error this package raises: a message a Node-RED user can act on, a short status, a code,
 * and the original cause. The message is redacted when it is built, and the whole error redacts
 * itself again whenever it is printed or serialised.
 */
export class PipelineError extends Error {
  readonly status: string;
  readonly code: string;
  readonly httpStatus?: number;
  readonly partial: boolean;

  constructor(message: string, options: PipelineErrorOptions = {}) {
    super(redact(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.status = options.status ?? "error";
    this.code = options.code ?? "GW_ERROR";
    this.httpStatus = options.httpStatus;
    this.partial = options.partial ?? false;
  }

  /**
   * The message alone: Node-RED puts `String(err)` in a Catch node's `msg.error.message` and in the
   * debug sidebar, where a class name (`HttpError: …`) means nothing to a user. The name stays on
   * the error, in its stack and when it is inspected.
   */
  override toString(): string {
    return this.message;
  }

  [inspect.custom](): string {
    const cause = this.cause instanceof Error ? `\n  cause: ${redact(this.cause.message)}` : "";
    return redact(`${this.name} [${this.code}]: ${this.message}${cause}`);
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, status: this.status };
  }
}

/** The flow sent something the node cannot use. */
export class InputError extends PipelineError {
  constructor(message: string, options: PipelineErrorOptions = {}) {
    super(message, { status: "invalid input", code: "GW_INVALID_INPUT", httpStatus: 400, ...options });
  }
}

/** The node or a config node is set up wrongly. */
export class ConfigError extends PipelineError {
  constructor(message: string, options: PipelineErrorOptions = {}) {
    super(message, { status: "configuration", code: "GW_CONFIG", ...options });
  }
}

/** A provider refused the stored grant: a person has to authorize again. */
export class AuthorizationRequiredError extends PipelineError {
  constructor(message: string, options: PipelineErrorOptions = {}) {
    super(message, { status: "needs authorization", code: "GW_NEEDS_AUTHORIZATION", httpStatus: 401, ...options });
  }
}

/** Turns anything thrown into a PipelineError without losing what it was. */
export function asPipelineError(err: unknown, context?: string): PipelineError {
  if (err instanceof PipelineError) return err;
  const base = err instanceof Error ? err.message : String(err);
  const message = context ? `${context}: ${base}` : base;
  const code = (err as { code?: unknown })?.code;
  return new PipelineError(message, { cause: err, code: typeof code === "string" ? code : undefined });
}

export function errorMessage(err: unknown): string {
  return redact(err instanceof Error ? err.message : String(err));
}
