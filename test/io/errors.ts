// Error matchers shared by the io/ tests: every io/ failure is a
// CheckpointError naming its file.
import { expect } from "vitest";
import { CheckpointError } from "../../src/io/errors.ts";

/** The error `p` rejects with, after checking that it is a CheckpointError (fails the test if `p` resolves). */
export async function caught(p: Promise<unknown>): Promise<CheckpointError> {
  const err = await p.then(
    () => {
      throw new Error("expected a CheckpointError");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(CheckpointError);
  return err as CheckpointError;
}

/** Matches a CheckpointError whose message is `message` (a string or an asymmetric matcher), and `file` if given. */
export const fileError = (message: unknown, file?: string) =>
  expect.objectContaining({ name: "CheckpointError", message, ...(file === undefined ? {} : { file }) });
