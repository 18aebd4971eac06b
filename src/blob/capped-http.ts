import { Readable, Transform } from "node:stream";
import type { HttpHeaders, HttpOperationResponse, IHttpClient, WebResource } from "@azure/storage-blob";
import { RestError } from "@azure/storage-blob";
import { Dispatcher, request as undiciRequest } from "undici";
import { ResponseTooLargeError } from "../core/http/client";

/** What one answer of Azure Storage may hold unless a download asks for a range. */
export const STORAGE_RESPONSE_MAX_BYTES = 16 * 1024 * 1024;

/** How long one try may take when the SDK gives no deadline of its own. */
const DEFAULT_TRY_TIMEOUT_MS = 120_000;

export interface CappedStorageOptions {
  /** The most a non-download answer may hold, in bytes. */
  maxResponseBytes?: number;
  dispatcher?: Dispatcher;
}

/**
 * The storage SDK's HTTP client, with caps: its own client reads every answer that is not a
 * download into one string, however large. This one reads an answer to at most
 * `maxResponseBytes`, a download to at most the range it asked for, each within the try's
 * deadline; a larger answer, the deadline or the caller's abort closes the request.
 */
export function cappedStorageClient(options: CappedStorageOptions = {}): IHttpClient {
  const maxBytes = options.maxResponseBytes ?? STORAGE_RESPONSE_MAX_BYTES;
  return {
    async sendRequest(resource: WebResource): Promise<HttpOperationResponse> {
      const controller = new AbortController();
      const timeoutMs = resource.timeout > 0 ? resource.timeout : DEFAULT_TRY_TIMEOUT_MS;
      const timer = setTimeout(() => controller.abort(new RestError(`no answer within ${timeoutMs} ms`, { code: "REQUEST_SEND_ERROR" })), timeoutMs);
      const onAbort = () => controller.abort(abortError());
      const signal = resource.abortSignal as AbortSignal | undefined;
      if (signal?.aborted) onAbort();
      signal?.addEventListener("abort", onAbort, { once: true });
      const finish = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
      };
      const url = new URL(resource.url);
      const tooLarge = (limit: number) => new ResponseTooLargeError(`Azure Storage answered with more than ${Math.round(limit / 1024 / 1024 * 10) / 10} MB to ${resource.method} ${url.pathname}; is the account's endpoint right?`, limit);
      try {
        const res = await undiciRequest(url, {
          method: resource.method as Dispatcher.HttpMethod,
          headers: resource.headers.toJson({ preserveCase: true }),
          body: requestBody(resource.body),
          dispatcher: options.dispatcher,
          signal: controller.signal,
        });
        const headers = responseHeaders(res.headers);
        const response: HttpOperationResponse = { status: res.statusCode, headers, request: resource };
        const streamed = resource.streamResponseStatusCodes?.has(res.statusCode) ?? false;
        const limit = streamed ? (rangeLength(resource.headers.get("x-ms-range") ?? resource.headers.get("range")) ?? maxBytes) : maxBytes;
        if (Number(res.headers["content-length"]) > limit) throw tooLarge(limit);
        if (streamed) {
          let size = 0;
          const capped = new Transform({
            transform(chunk: Buffer, _encoding, callback) {
              size += chunk.length;
              if (size > limit) {
                controller.abort(tooLarge(limit));
                callback(tooLarge(limit));
              } else callback(null, chunk);
            },
          });
          res.body.on("error", (err) => capped.destroy(err));
          capped.on("close", () => {
            finish();
            res.body.destroy();
          });
          response.readableStreamBody = res.body.pipe(capped);
          return response;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of res.body as AsyncIterable<Buffer>) {
          size += chunk.length;
          if (size > limit) throw tooLarge(limit);
          chunks.push(chunk);
        }
        response.bodyAsText = Buffer.concat(chunks).toString("utf8");
        finish();
        return response;
      } catch (err) {
        finish();
        const reason = controller.signal.reason;
        if (!controller.signal.aborted) controller.abort(err);
        if (err instanceof ResponseTooLargeError) throw err;
        if (reason instanceof Error) throw reason;
        throw new RestError((err as Error)?.message ?? String(err), { code: "REQUEST_SEND_ERROR" });
      }
    },
  };
}

function abortError(): Error {
  const err = new Error("The operation was aborted.");
  err.name = "AbortError";
  return err;
}

/** The body as undici takes it: the SDK sends strings, buffers and stream factories. */
function requestBody(body: WebResource["body"]): string | Buffer | Readable | undefined {
  if (body === undefined || body === null) return undefined;
  const value = typeof body === "function" ? (body as () => unknown)() : body;
  if (typeof value === "string" || Buffer.isBuffer(value) || value instanceof Readable) return value;
  if (value instanceof ArrayBuffer) return Buffer.from(value);
  if (ArrayBuffer.isView(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (value && typeof (value as NodeJS.ReadableStream).pipe === "function") return Readable.from(value as NodeJS.ReadableStream);
  throw new RestError("the storage request's body is of a kind this client does not send", { code: "REQUEST_SEND_ERROR" });
}

/** `bytes=0-99` is 100 bytes; an open range has no bound here. */
function rangeLength(range: string | undefined): number | undefined {
  const m = /^bytes=(\d+)-(\d+)$/.exec(range?.trim() ?? "");
  return m ? Number(m[2]) - Number(m[1]) + 1 : undefined;
}

/** The headers as the SDK reads them back (`toJson` is what its adapter asks for). */
function responseHeaders(raw: Record<string, string | string[] | undefined>): HttpHeaders {
  const values = new Map<string, { name: string; value: string }>();
  for (const [name, value] of Object.entries(raw)) if (value !== undefined) values.set(name.toLowerCase(), { name, value: Array.isArray(value) ? value.join(", ") : value });
  const headers = {
    get: (name: string) => values.get(name.toLowerCase())?.value,
    set: (name: string, value: string | number) => void values.set(name.toLowerCase(), { name, value: String(value) }),
    contains: (name: string) => values.has(name.toLowerCase()),
    remove: (name: string) => values.delete(name.toLowerCase()),
    rawHeaders: () => Object.fromEntries([...values.entries()].map(([k, v]) => [k, v.value])),
    headersArray: () => [...values.values()],
    headerNames: () => [...values.values()].map((v) => v.name),
    headerValues: () => [...values.values()].map((v) => v.value),
    toJson: (opts?: { preserveCase?: boolean }) => Object.fromEntries([...values.entries()].map(([k, v]) => [opts?.preserveCase ? v.name : k, v.value])),
    clone: () => responseHeaders(Object.fromEntries([...values.values()].map((v) => [v.name, v.value]))),
  };
  return headers as unknown as HttpHeaders;
}
