/**
 * `poolKfac`: {@link accumulateKfac} on the calibration worker pool
 * (docs/DISTRIBUTED.md "How a GradOT build uses the cores"). Each linear's
 * sums have one owning worker (`kfacOwners`: q, k and v, which share their
 * `A`, one owner; the workers' work about even), which is sent every chunk
 * of it in chunk order, so the factors are the bytes the building thread
 * would sum; the building thread routes each chunk's `x`, `γ` (moved,
 * not copied) and gathers a block's factors from the owners. A ReLU MLP's
 * channel products, which need fc1's `γ` and fc2's `x` of each chunk
 * (owned apart), are summed in the building thread as it routes the chunk
 * (`BlockChannelProducts`, n·m multiply-adds a chunk), in chunk order as
 * `accumulateKfac` sums them.
 *
 * @module
 */
import { concatMap, defer, filter, map, type OperatorFunction } from "rxjs";
import type { StartingPool } from "../distributed/calibration_pool.ts";
import { kfacOwners } from "../distributed/kfac_owners.ts";
import type { KfacFactors } from "../stats/kfac.ts";
import type { CalibrationEvent, LinearChunkRecord, StatsRecord } from "../records/records.ts";
import { BlockChannelProducts } from "./block_channel_products.ts";

/** Options of {@link poolKfac}. */
export interface PoolKfacOptions {
  /** The pool; started before the first chunk comes (`calibrateBackward` awaits it). */
  pool: StartingPool;
  /** The tokens of a block's sums, all chunks together (N·(T-1)): `kfacOwners` weighs the linears' work by it. */
  tokens: number;
}

/**
 * Routes chunk records to their owners and, on each block record, emits the
 * block with the factors of its linears gathered from the owners, in the
 * order its linears came (none for adapter blocks), and its channel products
 * (a ReLU MLP's), as `accumulateKfac` does.
 */
export function poolKfac(options: PoolKfacOptions): OperatorFunction<CalibrationEvent, StatsRecord> {
  return (source) =>
    defer(() => {
      let owners: Map<string, number> | undefined; // by linear name, fixed by the first chunk
      let chunk: LinearChunkRecord[] = []; // the chunk being gathered, one record per linear
      let order: string[] = []; // the block's linears, in the order they came
      let sent: Array<Promise<void>> = []; // the block's chunks on their way to the owners
      const products = new BlockChannelProducts(); // summed here, before the arrays move
      const started = () => {
        const pool = options.pool.ready;
        if (!pool) throw new Error("poolKfac: statistics came before the pool started");
        return pool;
      };
      /** Sends the gathered chunk's linears to their owners, one request per owner. */
      const flush = () => {
        if (chunk.length === 0) return;
        const pool = started();
        owners ??= kfacOwners(chunk.map((c) => ({ spec: c.linear, ...(c.sharesInputWith ? { sharesInputWith: c.sharesInputWith } : {}) })), pool.size, options.tokens);
        if (order.length === 0) order = chunk.map((c) => c.linear.name);
        const byOwner = new Map<number, Parameters<typeof pool.kfac>[1]>();
        for (const { kind: _, x, ...c } of chunk) {
          const k = owners.get(c.linear.name);
          if (k === undefined) throw new Error(`poolKfac: linear "${c.linear.name}" was not in the first chunk`);
          const linears = byOwner.get(k) ?? [];
          linears.push(c.sharesInputWith ? c : { ...c, x }); // a shared input travels once, with its first reader
          byOwner.set(k, linears);
        }
        for (const [k, linears] of byOwner) {
          const done = pool.kfac(k, linears);
          done.catch(() => {}); // awaited when the block closes
          sent.push(done);
        }
        chunk = [];
      };
      return source.pipe(
        map((event): Promise<StatsRecord> | undefined => {
          if (event.kind === "chunk") {
            if (chunk.length > 0 && chunk[0].linear.name === event.linear.name) flush(); // the next chunk begins
            chunk.push(event);
            products.add(event);
            return undefined;
          }
          flush();
          const pending = sent;
          const names = order;
          sent = [];
          order = [];
          const channelProducts = products.finalize(event.index);
          const base = {
            model: event.model,
            index: event.index,
            role: event.role,
            weights: event.weights,
            ...(channelProducts ? { channelProducts } : {}),
            ...(event.published ? { published: event.published } : {}),
          };
          if (names.length === 0) return Promise.resolve({ ...base, stats: new Map() });
          const pool = started();
          const finals = Array.from({ length: pool.size }, (_, k) => pool.finalizeKfac(k, event.index));
          finals.forEach((f) => f.catch(() => {})); // awaited below
          return Promise.all(pending).then(() => Promise.all(finals)).then((parts) => {
            const all = new Map<string, KfacFactors>(parts.flatMap((part) => [...part]));
            return { ...base, stats: new Map(names.map((name) => [name, all.get(name)!])) };
          });
        }),
        filter((record): record is Promise<StatsRecord> => record !== undefined),
        concatMap((record) => record),
      );
    });
}
