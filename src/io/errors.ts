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
