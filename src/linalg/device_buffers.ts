/**
 * Device buffers kept from one product to the next (docs/DISTRIBUTED.md "A
 * CUDA machine"): allocating and freeing GPU memory costs more than a mid-size
 * product, so the GPU BLAS holds one buffer per operand slot and only grows
 * it, geometrically, when a larger product comes. Pure bookkeeping over the
 * `alloc` and `free` it is given, so it is tested without a GPU.
 *
 * @module
 */

/** Sizes are rounded up to this many bytes (2 MiB, the allocator's large-page size). */
export const BUFFER_GRANULE = 2 * 1024 * 1024;

/**
 * The capacity in bytes a slot holding `current` bytes needs for `needed`:
 * `current` when it suffices, else at least 1.5 times `current` and at
 * least `needed`, rounded up to {@link BUFFER_GRANULE}, so a growing sequence
 * of products reallocates O(log) times.
 */
export function grownCapacity(current: number, needed: number): number {
  if (!(Number.isSafeInteger(needed) && needed >= 0)) throw new Error(`device buffer: ${needed} bytes is not a size`);
  if (needed <= current) return current;
  const wanted = Math.max(needed, Math.ceil(current * 1.5));
  return Math.ceil(wanted / BUFFER_GRANULE) * BUFFER_GRANULE;
}

/** A set of device buffers, one per slot, grown on demand and never shrunk. */
export class DeviceBuffers {
  readonly #slots: Array<{ ptr: bigint; bytes: number }> = [];

  /**
   * `alloc(bytes)` returns a device address (throwing on failure) and
   * `free(address)` releases one; both are the runtime's.
   */
  constructor(private readonly alloc: (bytes: number) => bigint, private readonly free: (ptr: bigint) => void) {}

  /** The address of slot `slot`, holding at least `bytes` bytes (its old contents are not kept when it grows). */
  get(slot: number, bytes: number): bigint {
    const held = this.#slots[slot];
    const capacity = grownCapacity(held?.bytes ?? 0, bytes);
    if (held && capacity === held.bytes) return held.ptr;
    if (held) {
      this.free(held.ptr); // before allocating, so the peak is the new size, not old + new
      delete this.#slots[slot];
    }
    const ptr = this.alloc(capacity);
    this.#slots[slot] = { ptr, bytes: capacity };
    return ptr;
  }

  /** Bytes held on the device over all slots. */
  get heldBytes(): number {
    return this.#slots.reduce((sum, s) => sum + (s?.bytes ?? 0), 0);
  }
}
