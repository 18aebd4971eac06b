import { PipelineError } from "../errors";

/** A fault of the embedded server: what happened (`reason`) and the one thing to do (`fix`). */
export class EmbeddedFault extends PipelineError {
  constructor(
    readonly reason: string,
    readonly fix: string,
    code: string,
    status: string,
    cause?: unknown,
  ) {
    super(`${reason}; ${fix}`, { code, status, cause });
  }
}
