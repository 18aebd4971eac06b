import type { MessageParts } from "./types";

/**
 * Back-pressure for a `msg.parts` sequence between two nodes of this package in one Node-RED
 * process. Node-RED has none: a node that reads faster than the next one writes fills memory with
 * queued messages. A consumer that knows sequences (blob-csv-writer) acknowledges each part once
 * handled; the producer (goto-call-logs) waits after sending while more than `window` parts of
 * the sequence are unacknowledged. Until a consumer has acknowledged a part, and after `stallMs`
 * without progress, the producer does not wait: a flow wired to nodes that know nothing of this
 * runs exactly as without it.
 *
 * A producer that fails or is closed half-way through a sequence says so (`endSequence(id, true)`):
 * consumers that listen (`onSequenceAbandoned`) drop what they hold of it at once, instead of
 * waiting for parts that will never come.
 */

interface Sequence {
  acknowledged: number;
  /** The consumer made no progress for a whole stall: the producer no longer waits for it. */
  stalled: boolean;
  waiters: Array<() => void>;
  touched: number;
}

const sequences = new Map<string, Sequence>();
const abandonListeners = new Set<(id: string) => void>();
const FORGET_AFTER_MS = 10 * 60_000;

/** The consumer has handled part `parts.index` of sequence `parts.id` (or dropped it). */
export function acknowledgePart(parts: Partial<MessageParts> | undefined): void {
  if (!parts || parts.id === undefined || !Number.isInteger(parts.index)) return;
  const id = String(parts.id);
  const now = Date.now();
  let seq = sequences.get(id);
  if (!seq) {
    forgetIdle(now);
    seq = { acknowledged: -1, stalled: false, waiters: [], touched: now };
    sequences.set(id, seq);
  }
  seq.acknowledged = Math.max(seq.acknowledged, Number(parts.index));
  seq.touched = now;
  const last = parts.count !== undefined && Number(parts.index) >= Number(parts.count) - 1;
  for (const wake of seq.waiters.splice(0)) wake();
  if (last) sequences.delete(id);
}

/**
 * The producer has sent part `index` of sequence `id`: resolves once at most `window` of its parts
 * are waiting to be handled, at once when no consumer acknowledges this sequence.
 */
export async function partSent(id: string, index: number, window: number, stallMs = 60_000, signal?: AbortSignal): Promise<void> {
  for (;;) {
    const seq = sequences.get(id);
    if (!seq || seq.stalled || index - seq.acknowledged <= window) return;
    if (signal?.aborted) return;
    const before = seq.acknowledged;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, stallMs);
      function done() {
        clearTimeout(timer);
        const i = seq!.waiters.indexOf(done);
        if (i >= 0) seq!.waiters.splice(i, 1);
        signal?.removeEventListener("abort", done);
        resolve();
      }
      seq.waiters.push(done);
      signal?.addEventListener("abort", done, { once: true });
    });
    if (seq.acknowledged === before && !signal?.aborted) {
      seq.stalled = true;
      return;
    }
  }
}

/**
 * The producer is done with sequence `id`: finished, or (`abandoned`) failed or closed before its
 * last part, which tells every consumer listening that the rest will not come.
 */
export function endSequence(id: string, abandoned = false): void {
  const seq = sequences.get(id);
  if (seq) {
    sequences.delete(id);
    for (const wake of seq.waiters.splice(0)) wake();
  }
  if (!abandoned) return;
  for (const listener of [...abandonListeners]) {
    try {
      listener(id);
    } catch {
      // A consumer's trouble must not become the producer's: each one guards its own work.
    }
  }
}

/** Calls `listener` with the id of every sequence abandoned by its producer; returns the way to stop. */
export function onSequenceAbandoned(listener: (id: string) => void): () => void {
  abandonListeners.add(listener);
  return () => abandonListeners.delete(listener);
}

function forgetIdle(now: number): void {
  for (const [id, seq] of sequences) if (now - seq.touched > FORGET_AFTER_MS && seq.waiters.length === 0) sequences.delete(id);
}
