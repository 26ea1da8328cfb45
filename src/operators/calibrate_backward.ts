/**
 * `calibrateBackward`: the calibration backward pass, block by block in
 * reverse with one block's weights resident (docs/DESIGN.md "The shape"): re-read
 * the block, recompute it on its stored input, take the VJP from the upstream
 * gradient, and emit each linear's inputs `x` and output gradients
 * `γ = ∂ℓ/∂y` (zero probes at the linear outputs, docs/DESIGN.md "Models") for
 * KFAC (docs/METHOD.md §2).
 *
 * The loss is the next-token loss of the calibration set; the head runs in
 * chunks small enough for its `[n, T, V]` logits (or, with a streamed
 * vocabulary, `streamedHeadLossGrad` sweeps the head matrix from the file in
 * vocabulary chunks, never holding it or the logits), and the upstream gradient
 * (on disk, in the forward's activation store, read chunk by chunk like the
 * block inputs) is kept as that of the *summed* token loss, so γ needs no rescaling
 * (`gradScale` 1) and `accumulateKfac` divides by the token count. Rows are
 * the positions that have a target (all but each sequence's last).
 *
 * The backward stops at the lowest middle block: the bottom adapter blocks
 * are not compressed, so they are re-read and emitted without a VJP. Blocks
 * come out in order L-1..0, each after its chunks.
 *
 * @example
 * ```ts
 * readCheckpoint(model).pipe(calibrateForward({ calibration }), calibrateBackward(), accumulateKfac())
 * ```
 *
 * @module
 */
import { Observable, type OperatorFunction, type Subscriber } from "rxjs";
import type { Tensor } from "@tensorflow/tfjs";
import { blockVjp, headLossGrad, streamedHeadLossGrad } from "../model/vjp.ts";
import type { Matrix } from "../linalg/matrix.ts";
import type { WeightMap } from "../model/types.ts";
import { outputWidth } from "../model/shapes.ts";
import { tf } from "../tensor/backend.ts";
import type { ActivationRecord, CalibrationEvent } from "../records/records.ts";
import { checkpointBoundary } from "../cli/interrupt.ts";
import { chunkIds, chunkTensor, defaultChunk, sequenceChunks, type StoredActivations } from "../io/activation_store.ts";
import type { ResumableBuild } from "../io/build_resume.ts";
import { type StageEvents, timeStage, timeStageAsync } from "../events/stage_events.ts";
import { disposeWeights } from "../model/weights.ts";
import { peekValues } from "../tensor/heap_view.ts";

/** Options of {@link calibrateBackward}. */
export interface CalibrateBackwardOptions {
  /** Sequences per chunk (default: `defaultChunk`, about 512 tokens, fewer for a wide MLP). */
  chunk?: number;
  /** Sequences per head (loss) chunk (default: what keeps the logits under 4 Mi values). */
  headChunk?: number;
  /**
   * Receives the seconds of each stage's work (read, backward) and, once the
   * head's gradient is known (or a resumed build's recorded loss is read), a
   * `head` event with the calibration loss (mean next-token NLL) and its
   * token count.
   */
  events?: StageEvents;
  /** Checked before each block: when aborted, the pass stops there with the signal's reason (src/cli/interrupt.ts). */
  signal?: AbortSignal;
  /**
   * A resumable build: gradients go to its persistent store (`grad-<i>`: at
   * block i's input, `grad-<L>` at the head), the loss to its progress, and
   * blocks whose shards an earlier run wrote are skipped
   * (src/io/build_resume.ts).
   */
  resume?: ResumableBuild;
}

/** The name of the loss gradient at block `i`'s input in a persistent store (`grad-<L>`: at the head). */
const gradientName = (i: number) => `grad-${i}`;

function collectAll(records: ActivationRecord[]): ActivationRecord[] {
  if (records.length === 0) return records;
  const layers = records[0].model.cfg.layers;
  const sorted = [...records].sort((a, b) => a.index - b.index);
  if (sorted.length !== layers || sorted.some((r, i) => r.index !== i)) {
    throw new Error(
      `calibrateBackward needs the activations of all ${layers} blocks, got blocks ${sorted.map((r) => r.index).join(", ")}`,
    );
  }
  return sorted;
}

/**
 * `[n, T, w]` -> `[n·(T-1), w]`, copied off the tensor heap into a
 * {@link Matrix} in one pass: a sequence's last position predicts no target,
 * so its γ is zero and it is not a calibration token of the loss; dropping it
 * makes KFAC's token mean the loss's mean (docs/METHOD.md §2).
 */
function rowsWithTargets(x: Tensor): Matrix {
  const [n, t, w] = x.shape as [number, number, number];
  const out = new Float32Array(n * (t - 1) * w); // [n·(T-1), w]
  const values = peekValues(x); // a heap view: no tensor is made while it is read
  for (let s = 0; s < n; s++) out.set(values.subarray(s * t * w, (s * t + t - 1) * w), s * (t - 1) * w);
  return { rows: n * (t - 1), cols: w, data: out };
}

/**
 * The chunk's linear inputs `[n, T, in]`, captured by `onLinearInput` (kept
 * past the VJP); linears handed the very same tensor (q, k, v) share one capture,
 * and `sharedWith` names the first linear that read it.
 */
function captureInputs(): {
  inputs: Map<string, Tensor>;
  sharedWith: Map<string, string>;
  hook: (name: string, x: Tensor) => void;
} {
  const inputs = new Map<string, Tensor>();
  const sharedWith = new Map<string, string>();
  const firstReader = new Map<Tensor, string>();
  return {
    inputs,
    sharedWith,
    hook: (name, x) => {
      const first = firstReader.get(x);
      if (first !== undefined) {
        sharedWith.set(name, first);
        return;
      }
      firstReader.set(x, name);
      inputs.set(name, tf.keep(tf.clone(x))); // [n, T, in]; a clone shares x's memory, and the caller may own x
    },
  };
}

/** Logit values one head chunk may hold (the loss and its gradient keep several `[n·T, V]` buffers). */
const HEAD_CHUNK_LOGITS = 1 << 22;

/**
 * Sequences per head chunk, so a chunk's logits `[n, T, V]` stay under
 * {@link HEAD_CHUNK_LOGITS} (at least one sequence): a 50k vocabulary would
 * otherwise outgrow the wasm heap. The head's gradient is stored as that of
 * the summed loss, so head chunks need not match the block chunks.
 */
function defaultHeadChunk(t: number, vocab: number): number {
  return Math.max(1, Math.floor(HEAD_CHUNK_LOGITS / (t * vocab)));
}

/** Calibration positions a streamed head chunk takes: the vocabulary is re-read once per chunk. */
const STREAMED_HEAD_TOKENS = 4096;

/** Sequences per head chunk with a streamed vocabulary (at least one). */
function streamedHeadChunk(t: number): number {
  return Math.max(1, Math.floor(STREAMED_HEAD_TOKENS / t));
}

async function runBackward(
  records: ActivationRecord[],
  subscriber: Subscriber<CalibrationEvent>,
  options: CalibrateBackwardOptions,
  stopped: () => boolean,
): Promise<void> {
  const all = collectAll(records);
  if (all.length === 0) return;
  const { model, calibration } = all[0];
  const { arch, cfg, split } = model;
  const n = calibration.sequences;
  const t = calibration.length;
  const d = cfg.hidden;
  const chunk = options.chunk ?? defaultChunk(calibration, cfg);
  const { output, store } = all[all.length - 1];
  const { resume } = options;
  const name = (i: number) => (resume ? gradientName(i) : undefined);
  const missing = (what: string) =>
    new Error(`calibrateBackward: ${what}${resume ? ` (the resumable build in "${resume.dir}" is inconsistent: remove it)` : ""}`);

  // Upstream gradient at the last block's output, of the summed token loss
  // (a resumed build whose loss is recorded has it on disk, unless block
  // L-1 is written and no longer needs it).
  const reportLoss = (loss: number) => options.events?.next({ stage: "head", seconds: 0, loss, tokens: n * (t - 1) });
  let upstream: StoredActivations | undefined;
  if (resume?.loss !== undefined) {
    upstream = store.open(gradientName(cfg.layers), n, t, d);
    reportLoss(resume.loss);
  } else if (!output) {
    throw missing("the last block's activation record has no output");
  } else {
    upstream = headGradient(output);
  }
  output?.dispose();

  function headGradient(last: StoredActivations): StoredActivations {
    let lossSum = 0;
    const headChunk = options.headChunk ?? (model.vocabulary ? streamedHeadChunk(t) : defaultHeadChunk(t, cfg.vocabSize));
    const gradient = store.write(n, t, d, headChunk, (a, b) => {
      const hidden = chunkTensor(last, a, b); // [n, T, d]
      try {
        return timeStage(options.events, "backward", () => {
          if (model.vocabulary) {
            const ids = calibration.ids.subarray(a * t, b * t);
            const head = streamedHeadLossGrad(arch, cfg, model.outer, model.vocabulary.head, hidden, ids);
            lossSum += head.lossSum;
            return head.dHidden;
          }
          const ids = chunkIds(calibration, a, b);
          const { loss, dHidden } = headLossGrad(arch, cfg, model.outer, hidden, ids);
          // headLossGrad differentiates the chunk's mean loss: scale to the summed loss.
          const targets = (b - a) * (t - 1);
          lossSum += loss * targets;
          const summed = tf.tidy(() => tf.mul(dHidden, targets)); // [n, T, d]
          tf.dispose([ids, dHidden]);
          return summed;
        });
      } finally {
        hidden.dispose();
      }
    }, name(cfg.layers));
    const loss = lossSum / (n * (t - 1));
    resume?.recordLoss(loss);
    reportLoss(loss);
    return gradient;
  }

  const lowestMiddle = split.bottom;
  for (let index = cfg.layers - 1; index >= 0; index--) {
    await checkpointBoundary(options.signal);
    if (stopped()) return;
    const record = all[index];
    if (resume?.isDone(index)) {
      // Written by an earlier run: drop what it left, take the gradient below it.
      record.input?.dispose();
      for (const array of record.linearOutputs?.values() ?? []) array.dispose();
      upstream?.dispose();
      upstream = index > lowestMiddle ? store.open(gradientName(index), n, t, d) : undefined;
      continue;
    }
    const weights = await timeStageAsync(options.events, "read", () => model.loadBlock(index), { block: index });
    let spent: StoredActivations[] = [];
    try {
      if (index >= lowestMiddle) {
        const { input } = record;
        if (!input) throw missing(`block ${index}'s activation record has no input`);
        if (!upstream) throw missing(`the gradient at block ${index}'s output is missing`);
        const dOut = upstream;
        // The gradient at the block input, `[n, T, d]`, for sequences [a, b).
        const step = (a: number, b: number): Tensor => {
          const x = chunkTensor(input, a, b); // [n, T, d]
          const dy = chunkTensor(dOut, a, b); // [n, T, d]
          const replay = replayedOutputs(record, a, b); // [n, T, out] per linear
          try {
            return record.role === "middle"
              ? emitChunkStats(subscriber, record, weights, x, dy, replay, options.events)
              : timeStage(options.events, "backward", () => blockVjp(arch, cfg, weights, x, dy, { wrt: [], replay }), { block: index }).dx;
          } finally {
            tf.dispose([x, dy, ...(replay?.values() ?? [])]);
          }
        };
        if (index > lowestMiddle) upstream = store.write(n, t, d, chunk, step, name(index));
        else for (const [a, b] of sequenceChunks(n, chunk)) step(a, b).dispose();
        spent = [input, dOut, ...(record.linearOutputs?.values() ?? [])];
      }
    } catch (e) {
      disposeWeights(weights);
      throw e;
    }
    // Downstream writes the block's shard before next() returns; only then
    // are its input and output gradient no longer needed to redo it.
    subscriber.next({ kind: "block", model, index, role: record.role, weights });
    for (const array of spent) array.dispose();
  }
}

/** The forward's stored linear outputs of sequences `[a, b)`, `[n, T, out]` each, when it stored them. */
function replayedOutputs(record: ActivationRecord, a: number, b: number): Map<string, Tensor> | undefined {
  if (!record.linearOutputs) return undefined;
  return new Map([...record.linearOutputs].map(([name, array]) => [name, chunkTensor(array, a, b)]));
}

/**
 * One middle-block chunk: VJP with zero probes at every linear output, then
 * a chunk record per linear. Returns the input gradient `[n, T, d]`, which
 * the caller owns.
 */
function emitChunkStats(
  subscriber: Subscriber<CalibrationEvent>,
  record: ActivationRecord,
  weights: WeightMap,
  x: Tensor, // [n, T, d]
  dy: Tensor, // [n, T, d]
  replay: Map<string, Tensor> | undefined, // [n, T, out] per linear
  events: StageEvents | undefined,
): Tensor {
  const { arch, cfg } = record.model;
  const [nSeq, t] = x.shape;
  const specs = arch.linears(cfg);
  const probes = new Map(specs.map((s) => [s.name, tf.zeros([nSeq, t, outputWidth(weights, s)])])); // [n, T, out]
  const { inputs, sharedWith, hook } = captureInputs();
  const { dx, dProbes } = timeStage(events, "backward", () =>
    blockVjp(arch, cfg, weights, x, dy, { wrt: [], probes, onLinearInput: hook, replay }), { block: record.index });
  try {
    const matrices = new Map<string, Matrix>(); // each captured input copied off the heap once
    for (const spec of specs) {
      const owner = sharedWith.get(spec.name);
      const reader = owner ?? spec.name;
      const input = inputs.get(reader);
      const gamma = dProbes?.get(spec.name);
      if (!input || !gamma) throw new Error(`calibrateBackward: block ${record.index} did not run linear "${spec.name}"`);
      if (!matrices.has(reader)) matrices.set(reader, rowsWithTargets(input)); // [n·(T-1), in]
      subscriber.next({
        kind: "chunk",
        index: record.index,
        linear: spec,
        x: matrices.get(reader)!,
        gamma: rowsWithTargets(gamma), // [n·(T-1), out]
        gradScale: 1,
        ...(owner ? { sharesInputWith: owner } : {}),
      });
    }
  } catch (e) {
    dx.dispose();
    throw e;
  } finally {
    tf.dispose([...probes.values(), ...inputs.values(), ...(dProbes?.values() ?? [])]);
  }
  return dx;
}

/**
 * Collects the forward's activation records, then runs the backward from the
 * head down and emits, per block (L-1..0), a chunk record per linear and
 * chunk (middle blocks only) followed by the block with its reloaded weights.
 * Takes the records' activation store: each array is deleted once read for
 * the last time, and the store is closed when the backward completes, errors
 * or is unsubscribed.
 */
export function calibrateBackward(
  options: CalibrateBackwardOptions = {},
): OperatorFunction<ActivationRecord, CalibrationEvent> {
  return (source) =>
    new Observable<CalibrationEvent>((subscriber) => {
      const records: ActivationRecord[] = [];
      let stopped = false;
      const subscription = source.subscribe({
        next: (record) => records.push(record),
        error: (e) => subscriber.error(e),
        complete: () => {
          runBackward(records, subscriber, options, () => stopped).then(
            () => subscriber.complete(),
            (e) => subscriber.error(e),
          );
        },
      });
      return () => {
        stopped = true;
        subscription.unsubscribe();
        for (const store of new Set(records.map((r) => r.store))) store.close();
      };
    });
}
