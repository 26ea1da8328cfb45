/**
 * Positional reads that loop until a buffer is full: `readSync` may return
 * fewer bytes than asked, so every exact read of a file range needs this loop.
 *
 * @module
 */
import { readSync } from "node:fs";

/**
 * Reads into all of `out` from descriptor `fd` at byte `position`, looping
 * over short reads. Returns the bytes read: `out.byteLength`, or fewer when
 * the file ends first (the caller names that error).
 */
export function readFullySync(fd: number, out: Uint8Array, position: number): number {
  let done = 0;
  while (done < out.byteLength) {
    const got = readSync(fd, out, done, out.byteLength - done, position + done);
    if (got === 0) break;
    done += got;
  }
  return done;
}
