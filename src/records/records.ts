/**
 * The plain typed records that flow between offtune's operators
 * (docs/DESIGN.md "Records and files"). A record owns its tensors until the next
 * operator takes it; the taker disposes what it does not pass on.
 *
 * @module
 */
import type { TieNote } from "../compress/select.ts";
import type { Matrix } from "../linalg/matrix.ts";
import type { SvdResult } from "../linalg/svd.ts";
import type { Architecture, LinearSpec, ModelConfig, WeightMap } from "../model/types.ts";
import type { VocabularyRows } from "../model/vocabulary.ts";
import type { ActivationStore, StoredActivations } from "../io/activation_store.ts";
import type { ChannelProducts } from "../stats/channel_products.ts";
import type { KfacFactors } from "../stats/kfac.ts";
import type { SharedWeights } from "../distributed/shared_weights.ts";

/** Whether a block is tuned by the data owner or compressed into the emulator (docs/METHOD.md §1). */
export type BlockRole = "adapter" | "middle";

/** Which blocks form the adapter: the bottom `bottom` and top `top` blocks (docs/METHOD.md §1). */
export interface AdapterSplit {
  /** Adapter blocks at the bottom (the first `bottom` blocks). */
  bottom: number;
  /** Adapter blocks at the top (the last `top` blocks). */
  top: number;
}

/** The role of block `index` in a model of `layers` blocks under `split`. */
export function blockRole(index: number, layers: number, split: AdapterSplit): BlockRole {
  return index < split.bottom || index >= layers - split.top ? "adapter" : "middle";
}

/** Blocks `0..layers-1`: the forward order of a model that drops none. */
export function everyBlock(layers: number): number[] {
  return Array.from({ length: layers }, (_, i) => i);
}

/**
 * The model a stream is about: its architecture and config, the adapter split,
 * provenance, and lazy access to its weights, so stages can re-read a block
 * instead of keeping it resident (docs/DESIGN.md "Scale").
 */
export interface ModelHandle {
  /** Where the weights come from (a checkpoint directory). */
  source: string;
  /** The architecture (block function and weight names). */
  arch: Architecture;
  /** The parsed config.json. */
  cfg: ModelConfig;
  /** The adapter/emulator split. */
  split: AdapterSplit;
  /**
   * The original indices of the blocks this model runs, in forward order:
   * {@link everyBlock} for a checkpoint or a GradOT emulator, a subset for
   * an emulator that drops blocks (OT LayerDrop, docs/METHOD.md §3), a
   * middle block repeated at consecutive positions for one that shares
   * blocks (CRaSh: `loadBlock` is called at each position). Block
   * indices everywhere (`loadBlock`, roles, adapter shards) are original
   * ones, so an adapter tuned on such an emulator plugs into the original.
   */
  blockIndices: readonly number[];
  /** SHA-256 of config.json and the weight file headers: names the source in shards. */
  sourceHash: string;
  /**
   * Embeddings, final norm and head (kernel layout): loaded when the handle
   * opens and kept, since both ends of every pass need them; owned by the handle.
   * Without the vocabulary matrices when {@link vocabulary} is set.
   */
  outer: WeightMap;
  /**
   * The vocabulary matrices streamed from the checkpoint instead of held in
   * `outer` (`openModel(dir, { streamVocabulary: true })`, for models whose
   * embedding outweighs a block; `src/model/vocabulary.ts`). The calibration
   * passes and `writeShards` read them by rows; `head` is `embedding` when tied.
   */
  vocabulary?: StreamedVocabulary;
  /** A fresh copy of block `i`'s weights (`i` one of `blockIndices`); the caller owns and disposes them. */
  loadBlock(i: number): Promise<WeightMap>;
  /** Releases the outer weights and closes the files. */
  close(): Promise<void>;
}

/** A model's vocabulary matrices as stored rows `[V, d]` (see `ModelHandle.vocabulary`). */
export interface StreamedVocabulary {
  /** Rows of the token embedding `[V, d]`. */
  embedding: VocabularyRows;
  /** Rows of the LM head `[V, d]` (the embedding when tied). */
  head: VocabularyRows;
}

/** One block's weights in kernel layout, in forward order from `readCheckpoint`. */
export interface BlockRecord {
  /** The model the block belongs to. */
  model: ModelHandle;
  /** The block's original index. */
  index: number;
  /** Adapter or middle block. */
  role: BlockRole;
  /** The block's weights, owned by the record. */
  weights: WeightMap;
}

/**
 * Calibration token ids: `sequences` rows of `length` tokens, row-major
 * (docs/METHOD.md §2: `ℓ` is the LM loss on calibration text).
 */
export interface CalibrationSet {
  /** Token ids `[N·T]`, row-major. */
  ids: Int32Array;
  /** Number of sequences N. */
  sequences: number;
  /** Tokens per sequence T. */
  length: number;
}

/**
 * A block's input activations from the calibration forward (weights
 * released), as handles into the pass's on-disk `store` (docs/DESIGN.md "The
 * shape"). The records of one pass share the store; whoever takes them
 * closes it when done, which deletes every array left in it.
 */
export interface ActivationRecord {
  /** The model the block belongs to. */
  model: ModelHandle;
  /** The block's original index. */
  index: number;
  /** Adapter or middle block. */
  role: BlockRole;
  /** The calibration set the activations come from. */
  calibration: CalibrationSet;
  /** Block input `[N, T, d]`; absent below `model.split.bottom`, whose blocks the backward never recomputes. */
  input?: StoredActivations;
  /** The last block's output `[N, T, d]` (the head's input), on the last record only. */
  output?: StoredActivations;
  /**
   * Each linear's output `[N, T, out]` on the block input, when the forward
   * stored them (`calibrateForward({ linearOutputs: true })`): the backward
   * replays them instead of recomputing the products.
   */
  linearOutputs?: Map<string, StoredActivations>;
  /** The pass's activation store, holding `input`, `output` and `linearOutputs`. */
  store: ActivationStore;
}

/**
 * The linear CKA between the outputs of a model's middle blocks on the
 * calibration set (`blockSimilarity`; docs/METHOD.md §3 "CRaSh"): what
 * CRaSh clusters the middle by.
 */
export interface BlockSimilarityRecord {
  /** The model the blocks belong to. */
  model: ModelHandle;
  /** Original indices of the compared blocks (the middle `M`), in forward order. */
  blocks: number[];
  /** `[M, M]` row-major, symmetric: CKA of the outputs of `blocks[i]` and `blocks[j]`. */
  cka: Float64Array;
}

/** One chunk of one linear's calibration data: inputs and output gradients (docs/METHOD.md §2 KFAC). */
export interface LinearChunkRecord {
  /** Tags a chunk in the backward stream. */
  kind: "chunk";
  /** The block's original index. */
  index: number;
  /** The linear (name inside the block, role, widths, bias). */
  linear: LinearSpec;
  /**
   * Inputs `[n, in]`, one row per token. `accumulateKfac` consumes `x` and
   * `gamma`: their arrays are reused once their chunk is done ({@link chunk})
   * (src/linalg/scratch_arrays.ts), so keep a copy to keep them longer.
   */
  x: Matrix;
  /** Output gradients `[n, out]` of the loss, scaled so `gamma · gradScale` is `∂(Σ_t ℓ_t)/∂y`. */
  gamma: Matrix;
  /** 1 when `gamma` already is the summed-loss gradient; else the token count its loss averaged over. */
  gradScale: number;
  /**
   * The first calibration sequence of the chunk the record comes from. A
   * chunk's records come together, so once a record of another chunk comes,
   * `accumulateKfac` reuses the arrays of the chunk before; without it, it
   * waits for the block's end.
   */
  chunk?: number;
  /**
   * The linear of this chunk, emitted earlier, that read the very same input
   * (q, k and v read one normed input): `x` is that linear's matrix, and
   * `accumulateKfac` keeps one `A` for both.
   */
  sharesInputWith?: string;
}

/** Closes a block in the backward stream: its weights follow its chunks. */
export interface BlockDoneRecord {
  /** Tags the end of a block in the backward stream. */
  kind: "block";
  /** The model the block belongs to. */
  model: ModelHandle;
  /** The block's original index. */
  index: number;
  /** Adapter or middle block. */
  role: BlockRole;
  /** The block's weights, owned by the record. */
  weights: WeightMap;
  /**
   * A middle block's weights as a calibration pool published them for its
   * backward chunks: its compression parts read them there instead of
   * copies, and the pool retires the publication once they are answered
   * (docs/DISTRIBUTED.md "How a GradOT build uses the cores").
   */
  published?: SharedWeights;
}

/** What `calibrateBackward` emits: chunks of a block, then the block itself. */
export type CalibrationEvent = LinearChunkRecord | BlockDoneRecord;

/** A block with the KFAC factors of its linears (empty for adapter blocks). */
export interface StatsRecord {
  /** The model the block belongs to. */
  model: ModelHandle;
  /** The block's original index. */
  index: number;
  /** Adapter or middle block. */
  role: BlockRole;
  /** The block's weights, owned by the record. */
  weights: WeightMap;
  /** By linear name (docs/METHOD.md §2 "Hessian by KFAC"); a ReLU MLP's linears have no `g`. */
  stats: Map<string, KfacFactors>;
  /**
   * A middle block's ReLU-MLP channel products `[m]`, SCP's first-order
   * terms in place of its linears' `g` (docs/GRADOT.md "SCP's first-order
   * terms"); absent for other MLPs and adapter blocks.
   */
  channelProducts?: ChannelProducts;
  /** The block's publication on a calibration pool, handed on from its {@link BlockDoneRecord}. */
  published?: SharedWeights;
}

/** GCS of every DRD component of one attention projection. */
export interface DrdScores {
  /** Thin SVD of the kernel-layout weight `[in, out]`. */
  svd: SvdResult;
  /** `[k]` GCS per component (docs/METHOD.md §2 DRD). */
  scores: Float32Array;
}

/** What a block was compressed to, for the manifest and the budget check. */
export interface CompressionNote {
  /** Kept rank per DRD projection. */
  ranks?: Record<string, number>;
  /** Kept MLP channels (SCP). */
  width?: number;
  /** Whether each selection's cut fell in a score tie (docs/METHOD.md §2 "Ties at the cut"). */
  ties?: {
    /** Per DRD projection, by linear name. */
    drd?: Record<string, TieNote>;
    /** Of the SCP channel selection. */
    scp?: TieNote;
  };
}

/** A block scored by `scoreGcs`, and later compressed in place by `compressDrd`/`compressScp`. */
export interface ScoredBlockRecord {
  /** The model the block belongs to. */
  model: ModelHandle;
  /** The block's original index. */
  index: number;
  /** Adapter or middle block. */
  role: BlockRole;
  /** The block's weights, owned by the record (compressed in place). */
  weights: WeightMap;
  /** DRD scores by attention linear name (middle blocks only). */
  drd: Map<string, DrdScores>;
  /** SCP GCS per MLP channel `[m]` (middle blocks only). */
  scp?: Float32Array;
  /** What the compressors chose so far (for the manifest). */
  compression: CompressionNote;
}

/** One written shard of an emulator or adapter package. */
export interface ShardRecord {
  /** The block index, or `outer` for embeddings, final norm and head. */
  block: number | "outer";
  /** The shard's file name inside the package. */
  file: string;
  /** Lowercase hex SHA-256 of the file. */
  sha256: string;
  /** File size in bytes. */
  bytes: number;
}
