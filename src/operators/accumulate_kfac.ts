/**
 * `accumulateKfac`: folds the backward's per-chunk linear data into KFAC
 * factors `A = E[x xᵀ]`, `G = E[γ γᵀ]` and the weight gradient `g`
 * (docs/METHOD.md §2 "Hessian by KFAC"; scaling in `src/stats/kfac.ts`: `G δ A`
 * and `g` are the curvature and gradient of the mean calibration loss).
 * A ReLU MLP's fc1 and fc2 get no `g`: SCP's first-order terms of both come
 * from the block's channel products (`BlockChannelProducts`, docs/GRADOT.md
 * "SCP's first-order terms"); GELU and SwiGLU MLPs and attention keep `g`.
 *
 * The producing linears of an MLP (`mlp.in`, `mlp.gate`, `mlp.up`) with a
 * bias get inputs augmented by a constant 1, so SCP scores the removal of a
 * channel's bias together with its weights; attention and output linears do
 * not (DRD and SCP leave those biases alone). Linears whose chunks name an
 * earlier linear in `sharesInputWith` (q, k and v read one normed input)
 * share that linear's `A`: one factor, summed once.
 *
 * @example
 * ```ts
 * calibrateBackward().pipe(accumulateKfac(), scoreGcs({ lambdaAttn: 1, lambdaMlp: 1 }))
 * ```
 *
 * @module
 */
import { defer, filter, map, type OperatorFunction } from "rxjs";
import type { LinearSpec } from "../model/types.ts";
import { accumulateKfac as accumulate, finalizeKfac, type KfacFactors, type KfacState } from "../stats/kfac.ts";
import type { CalibrationEvent, LinearChunkRecord, StatsRecord } from "../records/records.ts";
import { inReluMlp, producesChannels } from "../model/mlp_view.ts";
import { type StageEvents, timeStage } from "../events/stage_events.ts";
import { BlockChannelProducts } from "./block_channel_products.ts";
import { giveScratch } from "../linalg/scratch_arrays.ts";

/** Whether SCP removes this linear's bias with its channel (so its statistics include a constant input). */
export function foldsBias(spec: LinearSpec): boolean {
  return spec.hasBias && producesChannels(spec);
}

/**
 * Whether a linear reads ReLU outputs, never negative: a ReLU MLP's output
 * linear. KFAC then sums its `A`, which SCP reduces to column L1 norms, as
 * those norms directly (`nonNegativeInputs`, src/stats/kfac.ts), at O(N·m)
 * instead of the m² Gram's O(N·m²).
 */
export function readsReluOutputs(spec: LinearSpec): boolean {
  return spec.role === "mlp.out" && inReluMlp(spec);
}

/**
 * The factors SCP reduces to column L1 norms only (`src/score/gcs.ts`
 * `scpScores`): `G` of the MLP's producing linears and `A` of its output
 * linear, the MLP width on a side; KFAC may hold them as their rows (a ReLU
 * MLP's `A` is summed as its column norms instead, {@link readsReluOutputs}).
 */
export function rowHeldFactors(spec: LinearSpec): { A: boolean; G: boolean } {
  return { A: spec.role === "mlp.out" && !readsReluOutputs(spec), G: producesChannels(spec) };
}

/**
 * Whether KFAC sums this linear's weight gradient `g`: every linear but a
 * ReLU MLP's, whose first-order SCP terms are the block's channel products
 * (docs/GRADOT.md "SCP's first-order terms").
 */
export function sumsGradient(spec: LinearSpec): boolean {
  return !inReluMlp(spec);
}

/** Options of {@link accumulateKfac}. */
export interface AccumulateKfacOptions {
  /** Receives the seconds of each block's accumulation and finalization. */
  events?: StageEvents;
}

/**
 * One block's running KFAC sums, linear by linear: chunk records are added in
 * the order they come, and the factors are finalized in the order their
 * linears first came (an input's owner before the linears sharing it). The
 * building thread keeps one ({@link accumulateKfac}); so does each
 * calibration worker for the linears it owns (docs/DISTRIBUTED.md "How a
 * GradOT build uses the cores"): the same sums in the same order either way.
 */
export class BlockKfacSums {
  readonly #states = new Map<string, KfacState>();
  #block: number | undefined;

  /** Adds one chunk record's `x`, `γ` to its linear's sums (started by its first chunk). */
  add(event: Omit<LinearChunkRecord, "kind">): void {
    if (this.#block !== undefined && this.#block !== event.index) {
      throw new Error(`accumulateKfac: chunks of block ${event.index} arrived before block ${this.#block} closed`);
    }
    this.#block = event.index;
    const name = event.linear.name;
    const owner = event.sharesInputWith;
    const inputOf = owner === undefined ? undefined : this.#states.get(owner);
    if (owner !== undefined && !inputOf) {
      throw new Error(`accumulateKfac: "${name}" shares the input of "${owner}", which has no statistics in block ${event.index}`);
    }
    this.#states.set(
      name,
      accumulate(this.#states.get(name), event.x, event.gamma, {
        gradScale: event.gradScale,
        bias: foldsBias(event.linear),
        gradient: sumsGradient(event.linear),
        rowHeld: rowHeldFactors(event.linear),
        nonNegativeInputs: readsReluOutputs(event.linear),
        inputOf,
      }),
    );
  }

  /** Drops the sums of the block in flight, if any. */
  clear(): void {
    this.#states.clear();
    this.#block = undefined;
  }

  /** Block `index`'s factors, by linear (none when no chunk came); the sums start again empty. */
  finalize(index: number): Map<string, KfacFactors> {
    if (this.#block !== undefined && this.#block !== index) {
      throw new Error(`accumulateKfac: block ${index} closed while block ${this.#block} had open statistics`);
    }
    const stats = new Map<string, KfacFactors>();
    for (const [name, state] of this.#states) stats.set(name, finalizeKfac(state));
    this.clear();
    return stats;
  }
}

/**
 * The arrays of the chunk records read so far and not yet given back for
 * reuse (src/linalg/scratch_arrays.ts). A chunk's arrays are read until its
 * last record (q, k and v share one input; the channel products hold fc1's
 * `γ` till fc2's record), so they are given back when a record of another
 * chunk comes ({@link LinearChunkRecord.chunk}), or at the block's end.
 */
class ChunkArrays {
  readonly #arrays = new Set<Float32Array>();
  #chunk: number | undefined;
  readonly #done = new Set<number>();

  /** Before `record` is read: gives back the chunk before when `record` starts another. */
  startRecord(record: LinearChunkRecord): void {
    if (record.chunk === this.#chunk) return;
    if (record.chunk !== undefined && this.#done.has(record.chunk)) {
      throw new Error(`accumulateKfac: block ${record.index} sent a record of chunk ${record.chunk} after another chunk's: a chunk's records must come together`);
    }
    if (this.#chunk !== undefined) {
      this.#done.add(this.#chunk);
      if (record.chunk !== undefined) this.#giveArrays();
    }
    this.#chunk = record.chunk;
  }

  /** Holds `record`'s arrays till its chunk is done. */
  add(record: LinearChunkRecord): void {
    this.#arrays.add(record.x.data).add(record.gamma.data);
  }

  /** The block's end: gives back every array held. */
  giveBack(): void {
    this.#giveArrays();
    this.#done.clear();
    this.#chunk = undefined;
  }

  #giveArrays(): void {
    giveScratch(...this.#arrays);
    this.#arrays.clear();
  }
}

/**
 * Accumulates chunk records per linear and, on each block record, emits the
 * block with the finalized factors of its linears (none for adapter blocks)
 * and, for a ReLU MLP, its channel products. The chunk records' `x` and `γ`
 * arrays are consumed: once their chunk is done they are given back for
 * reuse ({@link ChunkArrays}), so a stage upstream that keeps a chunk record
 * longer must keep a copy of its arrays.
 * Each subscription accumulates into its own state, so subscribing twice to
 * the same piped observable counts every token once per subscription.
 */
export function accumulateKfac(options: AccumulateKfacOptions = {}): OperatorFunction<CalibrationEvent, StatsRecord> {
  const { events } = options;
  return (source) => defer(() => {
    const sums = new BlockKfacSums();
    const products = new BlockChannelProducts();
    const spent = new ChunkArrays();
    return source.pipe(
      map((event): StatsRecord | undefined => {
        if (event.kind === "chunk") {
          spent.startRecord(event);
          timeStage(events, "kfac", () => {
            sums.add(event);
            products.add(event);
          }, { block: event.index });
          spent.add(event);
          return undefined;
        }
        const [stats, channelProducts] = timeStage(events, "kfac", () => [sums.finalize(event.index), products.finalize(event.index)] as const, { block: event.index });
        spent.giveBack();
        return { model: event.model, index: event.index, role: event.role, weights: event.weights, stats, ...(channelProducts ? { channelProducts } : {}) };
      }),
      filter((record): record is StatsRecord => record !== undefined),
    );
  });
}
