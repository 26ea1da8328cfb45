/**
 * Reads and writes that loop until the whole buffer is done: `readSync` may
 * return fewer bytes than asked and `writeSync` may write fewer, so every
 * exact read or write of a file range needs this loop.
 *
 * @module
 */
import { readSync, writeSync } from "node:fs";

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

/**
 * Writes all of `bytes` to descriptor `fd`, at byte `position` or, when it is
 * null, at the descriptor's current offset, looping over short writes.
 */
export function writeFullySync(fd: number, bytes: Uint8Array, position: number | null = null): void {
  for (let done = 0; done < bytes.byteLength;) done += writeSync(fd, bytes, done, bytes.byteLength - done, position === null ? null : position + done);
}
