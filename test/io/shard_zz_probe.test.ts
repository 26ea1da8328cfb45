import { expect, it } from "vitest";
import { CheckpointError } from "../../src/io/errors.ts";
const f = () => { throw new CheckpointError("f", "m1"); };
it("match ok", () => { expect(f).toThrow(expect.objectContaining({ name: "CheckpointError", message: "m1", file: "f" })); });
it("match bad msg (should fail)", () => { expect(f).toThrow(expect.objectContaining({ name: "CheckpointError", message: "m" })); });
it("match bad class (should fail)", () => { expect(() => { throw new Error("m1"); }).toThrow(expect.objectContaining({ name: "CheckpointError", message: "m1" })); });
it("async ok", async () => { await expect(Promise.reject(new CheckpointError("f", "m1"))).rejects.toMatchObject({ name: "CheckpointError", message: "m1" }); });
it("async bad (should fail)", async () => { await expect(Promise.reject(new Error("m1"))).rejects.toMatchObject({ name: "CheckpointError", message: "m1" }); });
