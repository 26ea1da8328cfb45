/**
 * offtune: offsite-tuning of large language models, as composable RxJS
 * operators over plain typed records (docs/DESIGN.md "The shape").
 *
 * A model owner compresses the middle blocks of a model into an emulator
 * (GradOT: calibration forward/backward, KFAC, GCS, DRD + SCP; or the
 * OT LayerDrop baseline, which drops middle blocks), the data owner tunes
 * the adapter blocks through it, and the owner plugs the adapter back into
 * the original model.
 *
 * @example Build a GradOT emulator, streaming one block at a time
 * ```ts
 * import { lastValueFrom } from "rxjs";
 * import { buildGradotEmulator, calibrationFromTokens, initBackend, openModel } from "./mod.ts";
 *
 * await initBackend();
 * const model = await openModel("fixtures/small");
 * const tokens = new Uint16Array((await Deno.readFile("fixtures/data/pretrain/calibration.bin")).buffer);
 * const calibration = calibrationFromTokens(tokens, 32, 128);
 * await lastValueFrom(buildGradotEmulator(model, { calibration, out: "out/emulator", ratio: 0.5 }));
 * await model.close();
 * ```
 *
 * @example Compose the operators yourself
 * ```ts
 * readCheckpoint(model).pipe(
 *   calibrateForward({ calibration }),
 *   calibrateBackward(),
 *   accumulateKfac(),
 *   scoreGcs({ lambdaAttn: 1, lambdaMlp: 1 }),
 *   compressDrd({ ratio: 0.5 }),
 *   compressScp({ ratio: 0.5 }),
 *   writeShards("out/emulator", { method: "gradot", settings: {} }),
 * );
 * ```
 *
 * @module
 */

// Tensors and linear algebra
export { type BackendName, currentBackend, initBackend, tf } from "./src/tensor/backend.ts";
export { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from "./src/tensor/dtype.ts";
export type { Matrix } from "./src/linalg/matrix.ts";
export { svd, type SvdOptions, type SvdResult } from "./src/linalg/svd.ts";
export { eigh, type EighResult } from "./src/linalg/eigh.ts";
export { gramTransposed, lapackAvailable, matmul } from "./src/linalg/gemm.ts";

// Models
export type {
  Architecture,
  BlockOptions,
  LinearRole,
  LinearSpec,
  ModelConfig,
  WeightMap,
} from "./src/model/types.ts";
export { architectureFor, knownModelTypes, registerArchitecture } from "./src/model/registry.ts";
export { opt } from "./src/model/opt.ts";
export { gpt2 } from "./src/model/gpt2.ts";
export { llama } from "./src/model/llama.ts";
export { checkWeightsMatchConfig, loadBlockWeights, loadOuterWeights, resolveModel, toHfTensors } from "./src/model/load.ts";
export { forwardLogits, lmLoss } from "./src/model/forward.ts";
export { blockVjp, type BlockVjpResult, headLossGrad } from "./src/model/vjp.ts";

// Files
export {
  type CheckpointReader,
  openCheckpoint,
  saveCheckpoint,
  type TensorInfo,
  type TensorToSave,
} from "./src/io/checkpoint.ts";
export { CheckpointError } from "./src/io/errors.ts";
export { loadTokenizer, parseTokenizer, type Tokenizer } from "./src/io/tokenizer.ts";
export { decodeShard, readShardFile, readShardHeader } from "./src/io/shard_reader.ts";
export { encodeShard, writeShardFile } from "./src/io/shard_writer.ts";
export { configSha256 } from "./src/io/shard_schema.ts";
export type { ShardMeta, ShardTensor, ShardTensorInput, StreamedShardTensor } from "./src/io/shard_schema.ts";
export { createPackageWriter, type Manifest, readManifest, verifyPackage } from "./src/io/manifest.ts";

// Records
export * from "./src/records/records.ts";

// GradOT numerics (docs/METHOD.md §2)
export { accumulateKfac as accumulateKfacState, finalizeKfac, type KfacFactors, mergeKfac } from "./src/stats/kfac.ts";
export { addChannelTerms, drdScores, scpConsumerTerms, scpProducerTerms, scpScores } from "./src/score/gcs.ts";
export { compressDrd as compressProjection, selectDrdComponents } from "./src/compress/drd.ts";
export { pruneMlp, selectScpChannels } from "./src/compress/scp.ts";
export { type BlockBudget, type BudgetOptions, planBudget } from "./src/compress/budget.ts";

// Operators and sources
export { DEFAULT_SPLIT, openModel, type OpenModelOptions } from "./src/operators/model_handle.ts";
export { openPackage, type OpenedPackage } from "./src/operators/open_package.ts";
export { openSource, withAdapter } from "./src/operators/model_source.ts";
export { memoryModel } from "./src/operators/memory_model.ts";
export { readCheckpoint } from "./src/operators/read_checkpoint.ts";
export { calibrateForward, type CalibrateForwardOptions } from "./src/operators/calibrate_forward.ts";
export { calibrateBackward, type CalibrateBackwardOptions } from "./src/operators/calibrate_backward.ts";
export { accumulateKfac } from "./src/operators/accumulate_kfac.ts";
export { type GcsOptions, scoreGcs } from "./src/operators/score_gcs.ts";
export { compressDrd, type CompressDrdOptions } from "./src/operators/compress_drd.ts";
export { compressScp } from "./src/operators/compress_scp.ts";
export { writeShards, type WriteShardsOptions } from "./src/operators/write_shards.ts";
export { buildGradotEmulator, GRADOT_DEFAULTS, type GradotOptions } from "./src/operators/gradot.ts";
/**
 * The baseline GradOT is compared against: Offsite-Tuning's training-free
 * uniform LayerDrop emulator (docs/METHOD.md §3, "OT† (training-free
 * LayerDrop)"), which keeps every k-th middle block and drops the rest.
 */
export {
  buildLayerDropEmulator,
  dropBlocks,
  keptMiddlePositions,
  LAYERDROP_METHOD,
  layerDropBlocks,
  type LayerDropOptions,
} from "./src/operators/layer_drop.ts";
export { type Stage, type StageClock, totalsClock } from "./src/operators/stage_clock.ts";
export { calibrationFromTokens } from "./src/data/calibration.ts";

// Evaluation
export { scoreMultipleChoice, summarizeMultipleChoice } from "./src/eval/multiple_choice.ts";
export { scoreLoglikelihoods } from "./src/eval/loglikelihood.ts";
export { modelPerplexity, unigramPerplexity } from "./src/eval/perplexity.ts";
export { accuracyStats, chanceLevel, wilsonInterval } from "./src/eval/stats.ts";

// Training
export { AdamW } from "./src/train/adamw.ts";
export { learningRate } from "./src/train/schedule.ts";
export { tuneAdapter, tuneFullModel } from "./src/train/tune.ts";

// Reports
export { readRunResult, type RunResult, validateRunResult, writeRunResult } from "./src/report/run_result.ts";
