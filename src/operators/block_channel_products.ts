/**
 * One block's ReLU-MLP channel products (`src/stats/channel_products.ts`,
 * docs/GRADOT.md "SCP's first-order terms") from the backward's chunk
 * records, beside the block's KFAC sums (`BlockKfacSums`). Every path that
 * sums a block's statistics feeds it the same records in chunk order, so
 * the products are the same bits on each: `accumulateKfac`, `poolKfac` (in
 * the building thread, before a chunk's arrays move to their KFAC owners)
 * and `queuedCalibration` (from the slices' chunk files).
 *
 * @module
 */
import type { Matrix } from "../linalg/matrix.ts";
import { inReluMlp, producesChannels } from "../model/mlp_view.ts";
import type { LinearChunkRecord } from "../records/records.ts";
import { accumulateChannelProducts, type ChannelProducts, type ChannelProductState, finalizeChannelProducts } from "../stats/channel_products.ts";

/**
 * Pairs each chunk's ReLU channel producer record (fc1: its `γ`) with the
 * consumer record of the same chunk (fc2: its input `x`, the channels `h`)
 * and adds them to the block's channel products. A chunk's records come in
 * `arch.linears` order, the producer first; records of other linears and of
 * MLPs that are not ReLU pass by.
 */
export class BlockChannelProducts {
  #state: ChannelProductState | undefined;
  /** The producer's record of the chunk in flight, until its consumer's comes. */
  #producer: { name: string; gamma: Matrix; gradScale: number } | undefined;
  #block: number | undefined;

  /** Takes one chunk record (see the class doc). */
  add(event: Omit<LinearChunkRecord, "kind">): void {
    if (!inReluMlp(event.linear)) return;
    if (this.#block !== undefined && this.#block !== event.index) {
      throw new Error(`Channel products: chunks of block ${event.index} arrived before block ${this.#block} closed`);
    }
    this.#block = event.index;
    const { name } = event.linear;
    if (producesChannels(event.linear)) {
      if (this.#producer) {
        throw new Error(`Channel products: block ${event.index} sent a chunk of "${name}" before the consumer's chunk matching the last one`);
      }
      this.#producer = { name, gamma: event.gamma, gradScale: event.gradScale };
      return;
    }
    const producer = this.#producer;
    if (!producer) throw new Error(`Channel products: block ${event.index} sent a chunk of "${name}" without its channel producer's chunk before it`);
    this.#producer = undefined;
    this.#state = accumulateChannelProducts(this.#state, event.x, producer.gamma, producer.gradScale); // [n, m] each
  }

  /** Drops the sums of the block in flight, if any. */
  clear(): void {
    this.#state = undefined;
    this.#producer = undefined;
    this.#block = undefined;
  }

  /**
   * Block `index`'s channel products (none when it has no ReLU MLP or no
   * chunk came); the sums start again empty.
   *
   * @throws Error when a producer's chunk is left without its consumer's
   */
  finalize(index: number): ChannelProducts | undefined {
    if (this.#block !== undefined && this.#block !== index) {
      throw new Error(`Channel products: block ${index} closed while block ${this.#block} had open sums`);
    }
    if (this.#producer) throw new Error(`Channel products: block ${index} closed with a chunk of "${this.#producer.name}" and none of its consumer`);
    const state = this.#state;
    this.clear();
    return state ? finalizeChannelProducts(state) : undefined;
  }
}
