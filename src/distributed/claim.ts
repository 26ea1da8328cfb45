/**
 * Claims on offered requests: a request offered to two slots at once (a
 * worker thread and the building thread's, `SlotPool.offer`) is served by
 * the first to take its claim, a shared cell, when its turn comes; the
 * other passes it over. So a chunk goes to whichever slot is free first,
 * not to the one a cost estimate chose when it was posted
 * (docs/DISTRIBUTED.md "How a GradOT build uses the cores").
 *
 * @module
 */

/** One slot's ticket on an offered request: the cell the offer shares, and the slot's number. */
export interface ClaimTicket {
  /** One `Int32` in a `SharedArrayBuffer`: 0 while untaken, then the taker's slot number plus 1. */
  cell: Int32Array;
  /** The slot this ticket is for: its index in the pool. */
  slot: number;
}

/** A fresh claim cell, untaken. */
export function newClaimCell(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT));
}

/** Takes the claim for the ticket's slot; true when no slot had taken it, false when another did (or this one already). */
export function takeClaim(ticket: ClaimTicket): boolean {
  return Atomics.compareExchange(ticket.cell, 0, 0, ticket.slot + 1) === 0;
}

/** The slot that took the claim in `cell`, or undefined while none has. */
export function claimHolder(cell: Int32Array): number | undefined {
  const taken = Atomics.load(cell, 0);
  return taken === 0 ? undefined : taken - 1;
}
