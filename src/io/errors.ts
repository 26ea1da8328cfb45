/**
 * The one error type for bad files in `io/` (checkpoints, shards, manifests,
 * tokenizers), so callers can catch file problems apart from programming
 * errors and always learn which file was at fault.
 *
 * @module
 */

/**
 * A file (or directory) that cannot be read or written as the format requires.
 *
 * The message is a full sentence naming the file and the problem, e.g.
 * `Cannot read "model.safetensors": header length 99999 exceeds file size 1200`;
 * `file` carries the same path for programs.
 */
export class CheckpointError extends Error {
  /** The path of the file or directory at fault. */
  readonly file: string;

  /** An error about `file`; `message` should name the file and the problem. */
  constructor(file: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "CheckpointError";
    this.file = file;
  }
}

/** What the system error codes a write can meet mean, in words for a message. */
const WRITE_PROBLEMS: Readonly<Record<string, string>> = {
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EISDIR: "a directory is in the way",
  ENOTDIR: "a file is in the way of a directory on the path",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EROFS: "read-only file system",
  EEXIST: "a file is in the way",
};

/**
 * A write failure as a CheckpointError naming `path`: Node's ENOSPC and
 * EISDIR messages name no file (`ENOSPC: no space left on device, write`),
 * so the write helpers (src/io/atomic.ts, src/io/safetensors_file.ts) pass
 * their errors through this before throwing. Errors that are not a known
 * system write error, or are already a CheckpointError, come back unchanged.
 *
 * @returns `Cannot write "<path>": no space left on device (ENOSPC)` and the
 *   like, with the original error as `cause`
 */
export function fileWriteError(path: string, error: unknown): unknown {
  if (error instanceof CheckpointError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !Object.hasOwn(WRITE_PROBLEMS, code)) return error;
  return new CheckpointError(path, `Cannot write "${path}": ${WRITE_PROBLEMS[code]} (${code})`, { cause: error });
}
