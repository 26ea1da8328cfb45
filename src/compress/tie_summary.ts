/**
 * The one-line account of how often a GradOT build's selections were decided
 * by a tie-break rather than by the score itself (docs/METHOD.md §2 "Ties at
 * the cut"), from the per-block compression notes a package's manifest
 * keeps (`extra.blocks[].compression.ties`). `offtune build-emulator`
 * prints it at the end of a GradOT build.
 *
 * @module
 */
import type { CompressionNote } from "../records/records.ts";
import type { TieNote } from "./select.ts";

function part(what: string, unit: string, notes: TieNote[], items: string): string {
  const inTie = notes.filter((n) => n.bySecondary > 0).length;
  const bySecondary = notes.reduce((s, n) => s + n.bySecondary, 0);
  const byIndex = notes.reduce((s, n) => s + n.byIndex, 0);
  return `${what} cut in a tie in ${inTie} of ${notes.length} ${items}, ${bySecondary} ${unit} by secondary key (${byIndex} by index)`;
}

/**
 * E.g. `"SCP cut in a tie in 7 of 8 blocks, 279 channels by secondary key (0
 * by index); DRD cut in a tie in 0 of 32 projections, 0 components by
 * secondary key (0 by index)"`, over the blocks that have notes; undefined
 * when none has (a LayerDrop or CRaSh package, or one built before the notes).
 */
export function tieSummary(blocks: ReadonlyArray<{ compression?: CompressionNote }>): string | undefined {
  const scp = blocks.flatMap((b) => (b.compression?.ties?.scp ? [b.compression.ties.scp] : []));
  const drd = blocks.flatMap((b) => Object.values(b.compression?.ties?.drd ?? {}));
  const parts = [
    ...(scp.length ? [part("SCP", "channels", scp, "blocks")] : []),
    ...(drd.length ? [part("DRD", "components", drd, "projections")] : []),
  ];
  return parts.length ? parts.join("; ") : undefined;
}
