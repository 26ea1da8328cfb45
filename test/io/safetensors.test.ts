import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { CheckpointError } from "../../src/io/errors.ts";
import { openSafetensors } from "../../src/io/safetensors_file.ts";
import { caught } from "./errors.ts";

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "offtune-st-"));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/**
 * An independent writer following the published layout: u64 little-endian
 * header length, JSON header, raw data. `lengthField` overrides the length.
 */
function handWritten(header: unknown, data: Uint8Array, lengthField?: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(lengthField ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

let counter = 0;
async function fileOf(bytes: Uint8Array): Promise<string> {
  const path = join(dir, `t${counter++}.safetensors`);
  await writeFile(path, bytes);
  return path;
}

/** Little-endian bytes built through a DataView, independent of the codec. */
function bytesOf(n: number, fill: (view: DataView) => void): Uint8Array {
  const out = new Uint8Array(n);
  fill(new DataView(out.buffer));
  return out;
}

describe("reading a hand-written safetensors file", () => {
  it("decodes F32, F16 and BF16 values and metadata in header order", async () => {
    // F32 [2, 2] = 1.5, -2, 0.25, 1e-3 ; F16 [3] = 1, -2, 65504 ; BF16 [2] = 1, 3.140625
    const data = bytesOf(16 + 6 + 4, (v) => {
      [1.5, -2, 0.25, 1e-3].forEach((x, i) => v.setFloat32(4 * i, x, true));
      [0x3c00, 0xc000, 0x7bff].forEach((b, i) => v.setUint16(16 + 2 * i, b, true));
      [0x3f80, 0x4049].forEach((b, i) => v.setUint16(22 + 2 * i, b, true));
    });
    const path = await fileOf(handWritten({
      __metadata__: { format: "pt", note: "hand" },
      "w.f32": { dtype: "F32", shape: [2, 2], data_offsets: [0, 16] },
      "w.f16": { dtype: "F16", shape: [3], data_offsets: [16, 22] },
      "w.bf16": { dtype: "BF16", shape: [2], data_offsets: [22, 26] },
    }, data));
    const f = await openSafetensors(path);
    try {
      expect(f.header.metadata).toEqual({ format: "pt", note: "hand" });
      expect(f.header.entries.map((e) => e.name)).toEqual(["w.f32", "w.f16", "w.bf16"]);
      expect(f.entry("w.f32")?.shape).toEqual([2, 2]);
      expect([...await f.readF32("w.f32")]).toEqual([1.5, -2, 0.25, Math.fround(1e-3)]);
      expect([...await f.readF32("w.f16")]).toEqual([1, -2, 65504]);
      expect([...await f.readF32("w.bf16")]).toEqual([1, 3.140625]);
      expect(f.entry("absent")).toBeUndefined();
      await expect(f.readF32("absent")).rejects.toThrow(/no such tensor/);
    } finally {
      await f.close();
    }
  });

  it("accepts header order that differs from data order, and an empty tensor", async () => {
    const data = bytesOf(8, (v) => {
      v.setFloat32(0, 7, true);
      v.setFloat32(4, 9, true);
    });
    const path = await fileOf(handWritten({
      b: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
      empty: { dtype: "F32", shape: [0, 3], data_offsets: [4, 4] },
      a: { dtype: "F32", shape: [], data_offsets: [0, 4] },
    }, data));
    const f = await openSafetensors(path);
    expect(f.header.entries.map((e) => e.name)).toEqual(["b", "empty", "a"]);
    expect([...await f.readF32("a")]).toEqual([7]);
    expect([...await f.readF32("b")]).toEqual([9]);
    expect((await f.readF32("empty")).length).toBe(0);
    await f.close();
  });

  it("reads only the header and the requested tensor's bytes (lazy)", async () => {
    const big = 4 * 1024 * 1024; // 16 MiB of F32
    const data = new Uint8Array(8 + big * 4);
    new DataView(data.buffer).setFloat32(0, 42, true);
    new DataView(data.buffer).setFloat32(4, -1, true);
    const path = await fileOf(handWritten({
      small: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      big: { dtype: "F32", shape: [big], data_offsets: [8, 8 + big * 4] },
    }, data));
    const probe = await open(path, "r");
    const proto = Object.getPrototypeOf(probe) as { read: (...args: unknown[]) => Promise<unknown> };
    await probe.close();
    const spy = vi.spyOn(proto, "read");
    try {
      const f = await openSafetensors(path);
      expect([...await f.readF32("small")]).toEqual([42, -1]);
      await f.close();
      const requested = spy.mock.calls.reduce((sum, args) => sum + (args[2] as number), 0);
      // 8-byte prefix + header (< 200 bytes) + 8 bytes of "small": nowhere near the 16 MiB.
      expect(spy.mock.calls.length).toBe(3);
      expect(requested).toBeLessThan(300);
    } finally {
      spy.mockRestore();
    }
  });
});

describe("malformed safetensors files", () => {
  const f32x2 = bytesOf(8, () => {});
  const ok = { x: { dtype: "F32", shape: [2], data_offsets: [0, 8] } };

  async function openError(bytes: Uint8Array): Promise<CheckpointError> {
    const path = await fileOf(bytes);
    const err = await caught(openSafetensors(path));
    expect(err.file).toBe(path);
    expect(err.message).toContain(path);
    return err;
  }

  it("rejects a file shorter than the length field", async () => {
    const err = await openError(new Uint8Array([1, 2, 3]));
    expect(err.message).toMatch(/file size 3 is smaller than the 8-byte header length field/);
  });

  it("rejects a header length larger than the file", async () => {
    const bytes = handWritten(ok, f32x2, 99999);
    const err = await openError(bytes);
    expect(err.message).toMatch(new RegExp(`header length 99999 exceeds file size ${bytes.length}`));
  });

  it("rejects a header whose JSON is cut short", async () => {
    const json = JSON.stringify(ok);
    const err = await openError(handWritten(ok, f32x2, json.length - 5));
    expect(err.message).toMatch(/header is not valid UTF-8 JSON/);
  });

  it("rejects data offsets beyond the end of the file (truncated data)", async () => {
    const err = await openError(handWritten(ok, bytesOf(5, () => {})));
    expect(err.message).toMatch(/data is truncated: tensor "x" ends at byte 8 .* only 5 bytes/);
  });

  it("rejects an unknown dtype", async () => {
    const err = await openError(handWritten({ x: { dtype: "F24", shape: [2], data_offsets: [0, 8] } }, f32x2));
    expect(err.message).toMatch(/tensor "x" has unknown dtype "F24"/);
  });

  it("rejects overlapping offsets", async () => {
    const err = await openError(handWritten({
      a: { dtype: "F32", shape: [2], data_offsets: [0, 8] },
      b: { dtype: "F32", shape: [1], data_offsets: [4, 8] },
    }, f32x2));
    expect(err.message).toMatch(/tensor "b" at bytes \[4, 8\] overlaps tensor "a" ending at 8/);
  });

  it("rejects offsets in the wrong order", async () => {
    const err = await openError(handWritten({ x: { dtype: "F32", shape: [2], data_offsets: [8, 0] } }, f32x2));
    expect(err.message).toMatch(/data_offsets \[8, 0\] in the wrong order/);
  });

  it("rejects a gap between tensors and trailing bytes", async () => {
    const gap = await openError(handWritten({ x: { dtype: "F32", shape: [1], data_offsets: [4, 8] } }, f32x2));
    expect(gap.message).toMatch(/starts at byte 4, leaving a gap after byte 0/);
    const trailing = await openError(handWritten({ x: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, f32x2));
    expect(trailing.message).toMatch(/4 trailing bytes follow the last tensor/);
  });

  it("rejects a shape × dtype size that disagrees with the offsets", async () => {
    const err = await openError(handWritten({ x: { dtype: "F16", shape: [2], data_offsets: [0, 8] } }, f32x2));
    expect(err.message).toMatch(/tensor "x" spans 8 bytes but shape \[2\] × F16 needs 4/);
  });

  it("rejects a malformed shape and a non-string metadata value", async () => {
    const shape = await openError(handWritten({ x: { dtype: "F32", shape: [2.5], data_offsets: [0, 8] } }, f32x2));
    expect(shape.message).toMatch(/invalid shape \[2.5\]/);
    const meta = await openError(handWritten({ __metadata__: { n: 1 }, ...ok }, f32x2));
    expect(meta.message).toMatch(/__metadata__ value "n" is not a string/);
  });

  it("names the path of a missing file", async () => {
    const path = join(dir, "nope.safetensors");
    await expect(openSafetensors(path)).rejects.toThrow(`Cannot open "${path}"`);
  });
});
