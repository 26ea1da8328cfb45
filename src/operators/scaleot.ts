/**
 * The ScaleOT emulator (Yao et al.; docs/METHOD.md §3 "ScaleOT"): score the
 * importance of each middle block on calibration text (cheaply, or learned
 * by REINFORCE), replace the least important `K` by small trained
 * harmonizers (Dynamic LayerReplace, `src/model/harmonizer.ts`), and cut the
 * rank of the kept middle blocks' attention projections by SVD (Selective
 * Rank Compression, `src/compress/selective_rank.ts`).
 *
 * Two passes over the checkpoint: the calibration forward
 * (`calibrateForward`, every middle block's input and output kept on disk),
 * then importance, the policy (with `importance: "rl"`) and the harmonizers'
 * training on those hidden states; then the blocks again (`readCheckpoint`
 * → replace or compress → `writeShards`). The package runs every position:
 * a replaced block's shard holds its harmonizer (docs/SHARDS.md "Harmonizer
 * shards"), so the adapter blocks and outer weights are the original's and
 * an adapter tuned on it plugs into the original model unchanged.
 *
 * @example
 * ```ts
 * const model = await openModel("fixtures/small");
 * await lastValueFrom(buildScaleotEmulator(model, { ratio: 0.5, calibration, out: "out/scaleot" }));
 * ```
 *
 * @module
 */
import { concatMap, defer, from, lastValueFrom, map, type Observable, tap, toArray } from "rxjs";
import { fitHarmonizer, type FittedHarmonizer, HARMONIZER_DEFAULTS } from "../compress/harmonizer_fit.ts";
import { blockParams, replacedForFraction, replacedForRatio, scaleotBlockSizes, scaleotMiddleParams } from "../compress/scaleot_size.ts";
import { compressAttentionRanks } from "../compress/selective_rank.ts";
import type { StageEvents } from "../events/stage_events.ts";
import type { Manifest } from "../io/manifest.ts";
import { chunkIds, chunkTensor, defaultChunk, sequenceChunks, type StoredActivations } from "../io/activation_store.ts";
import { harmonizerParams, harmonizerShapes } from "../model/harmonizer.ts";
import type { WeightMap } from "../model/types.ts";
import { headLossGrad, streamedHeadLossGrad } from "../model/vjp.ts";
import { disposeWeights } from "../model/weights.ts";
import { type ActivationRecord, type BlockRecord, blockRole, type CalibrationSet, everyBlock, type ModelHandle, type ShardRecord } from "../records/records.ts";
import { reinforceImportance, POLICY_DEFAULTS } from "../score/importance_policy.ts";
import { cosineImportance, leastImportant, spearman } from "../score/layer_importance.ts";
import { tf } from "../tensor/backend.ts";
import { calibrateForward } from "./calibrate_forward.ts";
import type { GradotOptions } from "./gradot.ts";
import { readCheckpoint } from "./read_checkpoint.ts";
import { type WeightedBlock, writeShards } from "./write_shards.ts";

/** The method name a ScaleOT emulator's manifest, shards and run results carry. */
export const SCALEOT_METHOD = "scaleot";

/** How ScaleOT scores layer importance: `cheap` (1 − cosine) or `rl` (REINFORCE). */
export const IMPORTANCE_ESTIMATORS = ["cheap", "rl"] as const;

/** One of {@link IMPORTANCE_ESTIMATORS}. */
export type ImportanceEstimator = typeof IMPORTANCE_ESTIMATORS[number];

/** ScaleOT's defaults (docs/METHOD.md §3 "ScaleOT"; `offtune build-emulator --help`). */
export const SCALEOT_DEFAULTS = {
  /** β: the fraction of each kept attention projection's rank removed. */
  rankReduction: 0.75,
  importance: "cheap" as ImportanceEstimator,
  episodes: POLICY_DEFAULTS.episodes,
  /** Calibration sequences each REINFORCE reward is measured on (the first ones; all when fewer). */
  rewardSequences: 16,
  harmonizerRank: HARMONIZER_DEFAULTS.rank,
  harmonizerSteps: HARMONIZER_DEFAULTS.steps,
} as const;

/**
 * `value` as an {@link ImportanceEstimator}.
 *
 * @throws Error naming `--importance` for anything else
 */
export function importanceEstimator(value: string): ImportanceEstimator {
  if ((IMPORTANCE_ESTIMATORS as readonly string[]).includes(value)) return value as ImportanceEstimator;
  throw new Error(`--importance expects cheap or rl, got "${value}"`);
}

/**
 * Everything {@link buildScaleotEmulator} needs besides the model: GradOT's
 * calibration, output and storage options, and ScaleOT's triplet (the
 * adapter split is the model handle's).
 */
export interface ScaleotOptions extends Pick<GradotOptions, "calibration" | "out" | "chunk" | "dtype" | "tokenizer" | "signal"> {
  /** Emulator middle params / original middle params in (0, 1]: sets `K` when `replaceFraction` is not given. */
  ratio: number;
  /** α in [0, 1): replace `round(α · M)` middle blocks, whatever the ratio. */
  replaceFraction?: number;
  /** β in [0, 1) (default {@link SCALEOT_DEFAULTS}). */
  rankReduction?: number;
  /** The importance estimator (default `cheap`). */
  importance?: ImportanceEstimator;
  /** REINFORCE episodes of `rl` importance. */
  episodes?: number;
  /** Calibration sequences each reward is measured on: the first `min(rewardSequences, N)`. */
  rewardSequences?: number;
  /** Harmonizer rank r. */
  harmonizerRank?: number;
  /** AdamW steps per harmonizer. */
  harmonizerSteps?: number;
  /** Seed of the policy's sampling and the harmonizers' initial weights (default 0). */
  seed?: number;
  /**
   * The build's stage events: timings (`read`, `forward`, `score` for the
   * importance and each policy episode, `compress` for each harmonizer, the
   * rank compression and `write`) and progress marks in steps.
   */
  events?: StageEvents;
}

/** What the first pass decided: the blocks replaced, their harmonizers and the importance scores. */
interface ScaleotPlan {
  /** Original indices of the replaced middle blocks, ascending. */
  replaced: number[];
  harmonizers: Map<number, FittedHarmonizer>;
  /** Cheap importance per middle block (in middle order). */
  cheap: number[];
  /** Learned importance per middle block, with `rl`. */
  rl?: number[];
  /** The policy's reward per episode, with `rl`. */
  rewards?: number[];
}

/**
 * The mean calibration LM loss (nats per predicted token) on the first
 * `sequences` calibration sequences of `model` with the blocks `skipped`
 * left out (their input passed on unchanged: a fresh harmonizer's
 * function), run from the first resident block's stored `input` through
 * the resident `blocks` (in order) and the head.
 */
function skippedLoss(
  model: ModelHandle,
  calibration: CalibrationSet,
  input: StoredActivations,
  blocks: Array<[number, WeightMap]>,
  skipped: ReadonlySet<number>,
  sequences: number,
  chunk: number,
): number {
  const { arch, cfg } = model;
  const t = calibration.length;
  let lossSum = 0;
  for (const [a, b] of sequenceChunks(sequences, chunk)) {
    const hidden = tf.tidy(() => {
      let h = chunkTensor(input, a, b); // [n, T, d]
      for (const [i, weights] of blocks) if (!skipped.has(i)) h = arch.block(weights, h, cfg); // [n, T, d]
      return h;
    });
    try {
      if (model.vocabulary) {
        const ids = calibration.ids.subarray(a * t, b * t);
        const { lossSum: sum, dHidden } = streamedHeadLossGrad(arch, cfg, model.outer, model.vocabulary.head, hidden, ids);
        dHidden.dispose();
        lossSum += sum;
      } else {
        const ids = chunkIds(calibration, a, b);
        const { loss, dHidden } = headLossGrad(arch, cfg, model.outer, hidden, ids);
        ids.dispose();
        dHidden.dispose();
        lossSum += loss * (b - a) * (t - 1); // the chunk's mean loss, summed
      }
    } finally {
      hidden.dispose();
    }
  }
  return lossSum / (sequences * (t - 1));
}

/** How many calibration sequences each REINFORCE reward reads (see {@link ScaleotOptions.rewardSequences}). */
function rewardSequences(o: ScaleotOptions): number {
  const wanted = o.rewardSequences ?? SCALEOT_DEFAULTS.rewardSequences;
  if (!Number.isInteger(wanted) || wanted < 1) throw new RangeError(`ScaleOT reward sequences must be a positive integer, got ${wanted}`);
  return Math.min(wanted, o.calibration.sequences);
}

/** `x`, or null when it is NaN (a constant importance has no order to correlate). */
const finiteOrNull = (x: number) => (Number.isFinite(x) ? x : null);

/** The ScaleOT settings recorded in the manifest and every shard. */
function scaleotSettings(o: ScaleotOptions, middle: number, replaced: number[], beta: number): Record<string, unknown> {
  const importance = o.importance ?? SCALEOT_DEFAULTS.importance;
  return {
    ratio: o.replaceFraction === undefined ? o.ratio : null,
    replaceFraction: replaced.length / middle,
    rankReduction: beta,
    replaced,
    importance,
    ...(importance === "rl"
      ? { episodes: o.episodes ?? SCALEOT_DEFAULTS.episodes, rewardSequences: rewardSequences(o) }
      : {}),
    harmonizerRank: o.harmonizerRank ?? SCALEOT_DEFAULTS.harmonizerRank,
    harmonizerSteps: o.harmonizerSteps ?? SCALEOT_DEFAULTS.harmonizerSteps,
    seed: o.seed ?? 0,
    calibration: { sequences: o.calibration.sequences, length: o.calibration.length },
  };
}

/**
 * Builds the ScaleOT emulator package of `model` in `options.out` (module
 * doc). The manifest records method {@link SCALEOT_METHOD} and the
 * settings (α as the fraction actually replaced, β, the replaced blocks'
 * original indices, the estimator); its `extra.importance` holds the cheap
 * importance of every middle block, the learned one and the policy's
 * rewards with `rl`, and the Spearman correlation of the two orders;
 * `extra.harmonizerLoss` each harmonizer's first and last training MSE;
 * `extra.blocks` the stored parameters (harmonizers included). Bad options
 * are the observable's error, before any block is read.
 */
export function buildScaleotEmulator(model: ModelHandle, options: ScaleotOptions): Observable<ShardRecord> {
  return defer(() => {
    const { cfg, split, arch } = model;
    const middle = everyBlock(cfg.layers).filter((i) => blockRole(i, cfg.layers, split) === "middle");
    const beta = options.rankReduction ?? SCALEOT_DEFAULTS.rankReduction;
    const rank = options.harmonizerRank ?? SCALEOT_DEFAULTS.harmonizerRank;
    const sizes = scaleotBlockSizes(arch, cfg, beta, harmonizerParams(cfg.hidden, rank));
    const count = options.replaceFraction === undefined
      ? replacedForRatio(middle.length, options.ratio, sizes)
      : replacedForFraction(middle.length, options.replaceFraction);
    const importance = importanceEstimator(options.importance ?? SCALEOT_DEFAULTS.importance);
    const episodes = importance === "rl" && count > 0 ? options.episodes ?? SCALEOT_DEFAULTS.episodes : 0;
    const rewardRows = rewardSequences(options);
    const { events, signal, calibration } = options;
    const chunk = options.chunk ?? defaultChunk(calibration, cfg);
    const total = cfg.layers + middle.length + episodes + count + cfg.layers + 1; // forward, importance, episodes, harmonizers, shards
    let done = 0;
    const mark = (stage: "forward" | "score" | "compress" | "write", extra: { block?: number; detail?: string; seconds?: number } = {}) =>
      events?.next({ stage, done: ++done, total, unit: "steps", seconds: 0, ...extra });

    const plan = async (): Promise<ScaleotPlan> => {
      const records: ActivationRecord[] = await lastValueFrom(
        readCheckpoint(model, events, signal).pipe(
          calibrateForward({ calibration, chunk, events }),
          tap((r) => mark("forward", { block: r.index })),
          toArray(),
        ),
      );
      const store = records[0].store;
      try {
        const inputOf = (i: number) => records[i].input!; // [N, T, d]
        const outputOf = (i: number) => (i + 1 < cfg.layers ? records[i + 1].input! : records[i].output!); // [N, T, d]
        const cheap = middle.map((i) => {
          const started = performance.now();
          const value = cosineImportance(inputOf(i), outputOf(i), chunk);
          mark("score", { block: i, detail: `importance of block ${i}: ${value.toFixed(4)}`, seconds: (performance.now() - started) / 1000 });
          return value;
        });
        let rl: number[] | undefined;
        let rewards: number[] | undefined;
        if (episodes > 0) {
          const resident: Array<[number, WeightMap]> = [];
          try {
            for (let i = split.bottom; i < cfg.layers; i++) resident.push([i, await model.loadBlock(i)]);
            const learned = await reinforceImportance(middle.length, count, (replaced) => {
              signal?.throwIfAborted();
              const started = performance.now();
              const loss = skippedLoss(model, calibration, inputOf(split.bottom), resident, new Set(replaced.map((p) => middle[p])), rewardRows, chunk);
              mark("score", { detail: `policy: skip ${replaced.map((p) => middle[p]).join(",")} loss ${loss.toFixed(4)}`, seconds: (performance.now() - started) / 1000 });
              return -loss;
            }, { episodes, seed: options.seed ?? 0 });
            rl = [...learned.importance];
            rewards = learned.rewards;
          } finally {
            for (const [, weights] of resident) disposeWeights(weights);
          }
        }
        const replaced = leastImportant(rl ?? cheap, count).map((p) => middle[p]);
        const harmonizers = new Map<number, FittedHarmonizer>();
        for (const i of replaced) {
          signal?.throwIfAborted();
          const started = performance.now();
          const fitted = fitHarmonizer(inputOf(i), outputOf(i), {
            rank,
            steps: options.harmonizerSteps ?? SCALEOT_DEFAULTS.harmonizerSteps,
            seed: (options.seed ?? 0) + i,
            eps: cfg.normEps,
          });
          harmonizers.set(i, fitted);
          const [first, last] = [fitted.losses[0], fitted.losses.at(-1)!];
          mark("compress", { block: i, detail: `harmonizer for block ${i}: MSE ${first.toExponential(3)} → ${last.toExponential(3)}`, seconds: (performance.now() - started) / 1000 });
        }
        return { replaced, harmonizers, cheap, rl, rewards };
      } finally {
        store.close();
      }
    };

    const replaceOrCompress = (p: ScaleotPlan) => (record: BlockRecord): WeightedBlock => {
      if (record.role !== "middle") return record;
      const fitted = p.harmonizers.get(record.index);
      if (fitted) {
        disposeWeights(record.weights);
        const weights: WeightMap = new Map();
        for (const [name, shape] of harmonizerShapes(cfg.hidden, rank)) weights.set(name, tf.tensor(fitted.weights.get(name)!, shape));
        return { ...record, weights };
      }
      const started = performance.now();
      const ranks = compressAttentionRanks(record.weights, arch.linears(cfg), beta);
      events?.next({ stage: "compress", block: record.index, seconds: (performance.now() - started) / 1000 });
      return { ...record, compression: { ranks } };
    };

    return from(plan()).pipe(
      concatMap((p) =>
        readCheckpoint(model, events, signal).pipe(
          map(replaceOrCompress(p)),
          writeShards(options.out, {
            method: SCALEOT_METHOD,
            settings: scaleotSettings(options, middle.length, p.replaced, beta),
            extra: {
              importance: {
                blocks: middle,
                cheap: p.cheap,
                rl: p.rl ?? null,
                rewards: p.rewards ?? null,
                spearman: p.rl ? finiteOrNull(spearman(p.cheap, p.rl)) : null,
              },
              harmonizerLoss: Object.fromEntries([...p.harmonizers].map(([i, f]) => [String(i), [f.losses[0], f.losses.at(-1)]])),
              plannedMiddleParams: scaleotMiddleParams(middle.length, count, sizes),
            },
            dtype: options.dtype,
            tokenizer: options.tokenizer,
            events,
          }),
          tap((shard) => mark("write", { detail: `wrote ${shard.file}` })),
        )
      ),
    );
  });
}

/**
 * One line on a built ScaleOT package for `offtune build-emulator` to
 * print: the blocks replaced, α and β, the middle's parameters (as
 * `extra.blocks` counts them, so as `offtune experiment` records them)
 * against the original middle's of `model`, and with `rl` importance the
 * rank correlation of the two importance orders.
 */
export function scaleotSummary(manifest: Pick<Manifest, "settings" | "extra">, model: Pick<ModelHandle, "arch" | "cfg" | "split">): string {
  const originalMiddle = blockParams(model.arch, model.cfg) * (model.cfg.layers - model.split.bottom - model.split.top);
  const s = manifest.settings as { replaced: number[]; replaceFraction: number; rankReduction: number };
  const extra = manifest.extra as { blocks: Array<{ role: string; params: number }>; importance: { spearman: number | null; rl: unknown } };
  const params = extra.blocks.filter((b) => b.role === "middle").reduce((n, b) => n + b.params, 0);
  const replaced = s.replaced.length === 0 ? "none" : s.replaced.join(", ");
  const correlation = extra.importance.rl === null
    ? ""
    : `; Spearman correlation of the cheap and RL importance orders ${extra.importance.spearman?.toFixed(3) ?? "undefined (a constant order)"}`;
  return `scaleot: replaced blocks ${replaced} (α ${s.replaceFraction.toFixed(3)}), attention rank reduced by β ${s.rankReduction}; ` +
    `middle params ${params} of ${originalMiddle} (${(params / originalMiddle).toFixed(3)})${correlation}`;
}
