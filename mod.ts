/**
 * offtune: offsite-tuning of large language models, as composable RxJS
 * operators over plain typed records (docs/DESIGN.md "The shape").
 *
 * A model owner compresses the middle blocks of a model into an emulator
 * (GradOT: calibration forward/backward, KFAC, GCS, DRD + SCP; or the
 * OT LayerDrop baseline, which drops middle blocks; or the CRaSh baseline,
 * which clusters them and shares one block per group; or ScaleOT, which
 * replaces the least important by small harmonizers and cuts the rank of
 * the rest's attention), the data owner tunes
 * the adapter blocks through it, and the owner plugs the adapter back into
 * the original model. Every CLI verb is a thin shell over the functions
 * exported here, so a script can do all a verb does.
 *
 * @example Build a GradOT emulator, streaming one block at a time
 * ```ts
 * import { lastValueFrom } from "rxjs";
 * import { buildGradotEmulator, calibrationFromTokens, initBackend, openModel, readTokenStream } from "./mod.ts";
 *
 * await initBackend();
 * const model = await openModel("fixtures/small");
 * const tokens = readTokenStream("fixtures/data/pretrain/calibration.bin");
 * const calibration = calibrationFromTokens(tokens, 64, 128);
 * await lastValueFrom(buildGradotEmulator(model, { calibration, out: "out/emulator", ratio: 0.5 }));
 * await model.close();
 * ```
 *
 * @example Compose the operators yourself (README.md "As a library" has the whole script)
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
export { BLAS_CHOICES, type BlasChoice, blasChoice, parseBlasChoice } from "./src/linalg/blas_choice.ts";
export { GPU_MIN_MACS } from "./src/linalg/blas_select.ts";
export { selectedBlasSummary } from "./src/linalg/blas_summary.ts";

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
export { checkNoOtherTensors, checkWeightsMatchConfig, loadBlockWeights, loadOuterWeights, resolveModel, toHfTensors } from "./src/model/load.ts";
export { type CheckpointSummary, formatCheckpointSummary, inspectCheckpoint } from "./src/model/inspect.ts";
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
export {
  copyTokenizerFiles,
  loadTokenizer,
  ownTokenizer,
  parseTokenizer,
  type Tokenizer,
  TOKENIZER_CONFIG_FILE,
  TOKENIZER_FILE,
} from "./src/io/tokenizer.ts";
export { decodeShard, readShardFile, readShardHeader } from "./src/io/shard_reader.ts";
export { encodeShard, writeShardFile } from "./src/io/shard_writer.ts";
export { configSha256 } from "./src/io/shard_schema.ts";
export type { ShardDtype, ShardMeta, ShardTensor, ShardTensorInput, StreamedShardTensor } from "./src/io/shard_schema.ts";
export { createPackageWriter, type Manifest, readManifest, verifyPackage } from "./src/io/manifest.ts";
export { writeFileAtomic } from "./src/io/atomic.ts";
export { checkOutputDir, OUTPUT_MARKER, type OutputKind, type OutputRequest } from "./src/io/output_dir.ts";
export { FIXTURE_TOKENIZER, tokenizerFor } from "./src/io/tokenizer_for.ts";
export { type HfModelSource, writeHfModel, type WriteHfModelOptions } from "./src/io/hf_model_writer.ts";
export { readTokenStream } from "./src/data/token_stream.ts";
export { listTasks, readTaskFile, readTaskItems } from "./src/eval/task_file.ts";
export { readTokensOfFile } from "./src/data/text_tokens.ts";
export { removeStaleTemporaries } from "./src/io/stale_temps.ts";
export { ResumableBuild, type WrittenBlock } from "./src/io/build_resume.ts";
export type { McItem, TaskSplit } from "./src/data/tasks/types.ts";
export { buildFixtures } from "./src/data/build_fixtures.ts";

// Records
export * from "./src/records/records.ts";

// GradOT numerics (docs/METHOD.md §2)
export { accumulateKfac as accumulateKfacState, finalizeKfac, type KfacFactors, mergeKfac } from "./src/stats/kfac.ts";
export { accumulateChannelProducts, type ChannelProducts, finalizeChannelProducts } from "./src/stats/channel_products.ts";
export { addChannelTerms, drdScores, scpConsumerTerms, scpProducerTerms, scpScores } from "./src/score/gcs.ts";
export { compressDrd as compressProjection, type DrdOptions, selectDrdComponents } from "./src/compress/drd.ts";
export { channelMagnitudes, pruneMlp, selectScpChannels } from "./src/compress/scp.ts";
export { type BlockBudget, type BudgetOptions, COMPRESSED_PARTS, type CompressedPart, planBudget } from "./src/compress/budget.ts";
export { type Selection, type SelectionKind, SELECTIONS, selectTop, type TieNote } from "./src/compress/select.ts";
export { tieSummary } from "./src/compress/tie_summary.ts";
export { middleBudget } from "./src/compress/budget_plan.ts";

// CRaSh numerics (docs/METHOD.md §3 "CRaSh"): representation similarity and contiguous clustering
export { type ChunkedRows, ckaMatrix, columnMeans, linearCka } from "./src/stats/cka.ts";
export { clusterAdjacent } from "./src/compress/contiguous_clusters.ts";

// Model sources (src/model/): checkpoints, packages, adapters, in-memory models
export { DEFAULT_SPLIT, openModel, type OpenModelOptions } from "./src/model/model_handle.ts";
export { openPackage, type OpenedPackage } from "./src/model/open_package.ts";
export { isPackage, openSource, withAdapter } from "./src/model/model_source.ts";
export { cloneWeights, memoryModel } from "./src/model/memory_model.ts";
export { disposeWeights } from "./src/model/weights.ts";

// Stage events: one stream of timings and progress for every long job
export {
  peakRssBytes,
  type Stage,
  type StageEvent,
  type StageEvents,
  stageTotals,
  timeStage,
  timeStageAsync,
} from "./src/events/stage_events.ts";
export { type BlockTiming, blockTimings, formatBlockTiming } from "./src/events/block_timings.ts";

// Operators (src/operators/: RxJS stages only)
export { readCheckpoint } from "./src/operators/read_checkpoint.ts";
export { BlockPace, calibrateForward, type CalibrateForwardOptions } from "./src/operators/calibrate_forward.ts";
export { calibrateBackward, type CalibrateBackwardOptions } from "./src/operators/calibrate_backward.ts";
export { accumulateKfac, type AccumulateKfacOptions } from "./src/operators/accumulate_kfac.ts";
export { type GcsOptions, scoreGcs } from "./src/operators/score_gcs.ts";
export { compressDrd, type CompressDrdOptions } from "./src/operators/compress_drd.ts";
export { compressScp } from "./src/operators/compress_scp.ts";
export { type WeightedBlock, writeShards, type WriteShardsOptions } from "./src/operators/write_shards.ts";
export { orderedMergeMap } from "./src/operators/ordered_merge_map.ts";
export { poolCompression, type PoolCompressionOptions } from "./src/operators/pool_compression.ts";
export {
  buildGradotEmulator,
  checkGradotVariant,
  GRADOT_DEFAULTS,
  gradotCompression,
  type GradotOptions,
  type GradotVariant,
  gradotProgressSteps,
  type GradotStage,
} from "./src/operators/gradot.ts";
/**
 * The baseline GradOT is compared against: Offsite-Tuning's training-free
 * uniform LayerDrop emulator (docs/METHOD.md §3, "OT† (training-free
 * LayerDrop)"), which keeps every k-th middle block and drops the rest.
 */
export {
  buildLayerDropEmulator,
  dropBlocks,
  keptMiddleCount,
  keptMiddlePositions,
  LAYERDROP_METHOD,
  layerDropBlocks,
  type LayerDropOptions,
} from "./src/operators/layer_drop.ts";
/**
 * The CRaSh baseline (docs/METHOD.md §3 "CRaSh"): the middle blocks
 * clustered into consecutive groups by the CKA of their outputs on
 * calibration text, one block kept per group and shared by all its
 * positions, so the emulator keeps the original depth.
 */
export { type BlockSimilarityOptions, blockSimilarity } from "./src/operators/block_similarity.ts";
export {
  buildCrashEmulator,
  CRASH_METHOD,
  crashGroups,
  type CrashOptions,
  crashSettings,
  sharedBlockIndices,
} from "./src/operators/crash.ts";
/**
 * The OT distilled baseline (docs/METHOD.md §3 "OT (LayerDrop +
 * distillation)"): LayerDrop's blocks, the kept middle blocks trained to
 * reproduce the original middle's output on calibration text.
 */
export {
  buildOtDistillEmulator,
  calibrationMse,
  type DistillCurve,
  OT_DISTILL_DEFAULTS,
  OT_DISTILL_METHOD,
  type OtDistillOptions,
  type OtDistillSettings,
  otDistillSettings,
  otDistillStatePath,
} from "./src/operators/ot_distill.ts";

/**
 * ScaleOT (docs/METHOD.md §3 "ScaleOT"): layer importance (cheap or learned
 * by REINFORCE), the least important middle blocks replaced by trained
 * harmonizers, the kept blocks' attention rank cut by SVD.
 */
export {
  buildScaleotEmulator,
  IMPORTANCE_ESTIMATORS,
  type ImportanceEstimator,
  importanceEstimator,
  SCALEOT_DEFAULTS,
  SCALEOT_METHOD,
  type ScaleotOptions,
  scaleotSummary,
} from "./src/operators/scaleot.ts";
export { cosineImportance, leastImportant, spearman } from "./src/score/layer_importance.ts";
export { type LearnedImportance, type PolicyOptions, POLICY_DEFAULTS, reinforceImportance } from "./src/score/importance_policy.ts";
export { fitHarmonizer, type FittedHarmonizer, HARMONIZER_DEFAULTS, type HarmonizerFitOptions } from "./src/compress/harmonizer_fit.ts";
export { compressAttentionRanks, reducedRank, truncateRank, type TruncatedProjection } from "./src/compress/selective_rank.ts";
export { blockParams, replacedForFraction, replacedForRatio, scaleotBlockSizes, scaleotMiddleParams } from "./src/compress/scaleot_size.ts";
export { harmonizerForward, harmonizerShapes, isHarmonizer, withHarmonizers } from "./src/model/harmonizer.ts";
export { calibrationFromTokens } from "./src/data/calibration.ts";

// The offsite-tuning loop's steps (src/loop/): what the CLI verbs run
export {
  buildEmulator,
  type BuildEmulatorOptions,
  EMULATOR_METHODS,
  type EmulatorMethod,
  emulatorMethod,
  loadCalibration,
  type LoadCalibrationOptions,
  needsCalibration,
  openResumableBuild,
  readCalibrationTokens,
} from "./src/loop/build_emulator.ts";
export { plugIn, type PlugInOptions } from "./src/loop/plug_in.ts";
export { runBlockJob } from "./src/loop/gradot_block.ts";
export { runSliceJob } from "./src/loop/gradot_slice.ts";
export { jobId, JobSubmitter, queueConnection, QUEUE_NAME, type VerbJob } from "./src/distributed/job_queue.ts";
export { claimsDir, type QueueWorker, serveQueue, type WorkerOptions } from "./src/distributed/queue_worker.ts";
export { CalibrationPool, StartingPool } from "./src/distributed/calibration_pool.ts";
export { CalibrationThreads } from "./src/distributed/calibration_threads.ts";
export { defaultWorkerCount } from "./src/distributed/worker_pool.ts";
export { sweepGradot, type SweepOptions, type SweepResult, type SweepRow } from "./src/loop/sweep_gradot.ts";
export {
  EXPERIMENT_DEFAULTS,
  experimentLabel,
  experimentOptions,
  type ExperimentOptions,
  runExperiment,
} from "./src/loop/experiment.ts";

// Evaluation
export {
  type McItemResult,
  type EncodeOptions,
  type McOptions,
  type McSummary,
  type PairEncoder,
  scoreMultipleChoice,
  summarizeMultipleChoice,
} from "./src/eval/multiple_choice.ts";
export {
  type LoglikelihoodOptions,
  type LoglikelihoodRequest,
  type LoglikelihoodResult,
  type Residency,
  scoreLoglikelihoods,
} from "./src/eval/loglikelihood.ts";
export {
  bitsPerByte,
  modelPerplexity,
  type Perplexity,
  type PerplexityOptions,
  predictedBytes,
  unigramPerplexity,
} from "./src/eval/perplexity.ts";
export {
  accuracyStats,
  type AccuracyStats,
  chanceLevel,
  type DifferenceInterval,
  pairedTInterval,
  studentTQuantile,
  wilsonInterval,
} from "./src/eval/stats.ts";
export {
  type AccuracyJson,
  buildEvalReport,
  EVAL_DEFAULTS,
  evaluate,
  type EvaluateOptions,
  FIXTURE_TASKS,
  type EvalReport,
  formatEvalReport,
  openForEval,
  parseTaskSplit,
  selectTasks,
} from "./src/eval/eval_report.ts";

// Training
export { AdamW } from "./src/train/adamw.ts";
export { learningRate } from "./src/train/schedule.ts";
export {
  type FullTuneResult,
  partialDirOf,
  tuneAdapter,
  type TuneAdapterOptions,
  type TuneCommonOptions,
  type TuneFullOptions,
  tuneFullModel,
  type TuneSummary,
} from "./src/train/tune.ts";
export { fullTuneStatePath } from "./src/train/full_ft_state.ts";
export { TUNE_STATE_FILE } from "./src/train/tune_package.ts";
export type { LoraOptions } from "./src/train/lora.ts";
export { TUNE_DEFAULTS, type TuneHyper, type TuneStepRecord } from "./src/train/tune_loop.ts";
export { goldExamples, type TuneExample } from "./src/train/mc_batches.ts";
export { padIdOf, readTrainItems, taskInputs, taskName } from "./src/train/task_examples.ts";
export {
  PRETRAIN_STATE_FILE,
  pretrain,
  type PretrainOptions,
  type PretrainResult,
} from "./src/train/pretrain_run.ts";
export type { StepRecord } from "./src/train/trainer.ts";

// Reports
export { readRunResult, type RunResult, validateRunResult, writeRunResult } from "./src/report/run_result.ts";
export { writeReport, type WrittenReport } from "./src/report/report_files.ts";
export type { Report } from "./src/report/aggregate.ts";
export type { Comparison, RowClaims } from "./src/report/compare.ts";
export {
  chainTrainingLogs,
  layerDropCurveSvg,
  parseTrainingLog,
  type TrainingLogLine,
  trainingCurveSvg,
} from "./src/report/training_curve.ts";

// Benchmarks (src/bench/): figures as ratios against baselines of the same run
export { type BenchRow, benchLinalg, type LinalgBenchOptions } from "./src/bench/linalg.ts";
export { benchMatmul, type MatmulBenchOptions, type MatmulBenchShape } from "./src/bench/kernels.ts";
export { benchBlockStack, type BlockStackBenchOptions } from "./src/bench/model.ts";
export { benchGradot, type GradotBenchOptions } from "./src/bench/gradot.ts";
export { benchScale, type ScaleBenchOptions } from "./src/bench/scale.ts";
export { benchBlas, type BlasBenchOptions, type BlasBenchShape, BLAS_BENCH_SHAPES } from "./src/bench/blas.ts";
export { BASE_SHAPE, benchPretrain, modelFlopsUtilisation, type PretrainBenchOptions } from "./src/bench/pretrain.ts";
export type { OptHyperParameters } from "./src/train/opt_config.ts";
