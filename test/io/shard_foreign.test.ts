/**
 * Shards and other Arrow implementations: our files read by Arrow's generic
 * reader (and by pyarrow where installed) without offtune's decoder, and files
 * built by other writers read by `decodeShard`, including the malformed ones
 * it must refuse.
 */
import { spawnSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  type Data,
  type DataType,
  Field,
  FixedSizeList,
  type Float,
  Float16,
  Float32,
  Float64,
  makeData,
  Precision,
  RecordBatch,
  Schema,
  Struct,
  Table,
  tableFromIPC,
  tableToIPC,
  Type,
} from "apache-arrow";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CheckpointError } from "../../src/io/errors.ts";
import { decodeShard, readShardFile } from "../../src/io/shard_reader.ts";
import type { ShardMeta } from "../../src/io/shard_schema.ts";
import { encodeShard, writeShardFile } from "../../src/io/shard_writer.ts";

let root: string;
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), "offtune-shard-foreign-"));
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

const meta: ShardMeta = { block: 11, role: "adapter", method: "lora", settings: { r: 8 }, sourceHash: "cafe", configHash: "beef" };

/** The schema metadata the format specifies, spelled out by hand (not taken from our code). */
const specMetadata = new Map([
  ["offtune.format_version", "2"],
  ["offtune.block", "11"],
  ["offtune.role", "adapter"],
  ["offtune.method", "lora"],
  ["offtune.settings", '{"r":8}'],
  ["offtune.source_hash", "cafe"],
  ["offtune.config_sha256", "beef"],
]);

describe("our shards read by Arrow's generic reader, without offtune code", () => {
  const w = Float32Array.from({ length: 12 }, (_, i) => (i - 5.5) / 3);
  const bytes = encodeShard(meta, [
    { name: "q_proj.weight", shape: [3, 4], data: w },
    { name: "q_proj.bias", shape: [4], data: new Float32Array([1, -2, 0.5, 65504]) },
  ]);

  it("is an Arrow IPC file: ARROW1 magic, padding, and closing magic", () => {
    expect(Array.from(bytes.subarray(0, 8))).toEqual([65, 82, 82, 79, 87, 49, 0, 0]);
    expect(new TextDecoder().decode(bytes.subarray(bytes.length - 6))).toBe("ARROW1");
  });

  it("has the documented schema metadata and one row", () => {
    const table = tableFromIPC(bytes);
    expect(table.numRows).toBe(1);
    expect(new Map(table.schema.metadata)).toEqual(specMetadata);
  });

  it("stores each tensor as arrow.fixed_shape_tensor over FixedSizeList<float32>", () => {
    const table = tableFromIPC(bytes);
    const [weight, bias] = table.schema.fields;
    expect(weight.name).toBe("q_proj.weight");
    expect(new Map(weight.metadata)).toEqual(
      new Map([
        ["ARROW:extension:name", "arrow.fixed_shape_tensor"],
        ["ARROW:extension:metadata", '{"shape":[3,4]}'],
      ]),
    );
    expect(weight.type).toBeInstanceOf(FixedSizeList);
    expect((weight.type as FixedSizeList).listSize).toBe(12);
    expect((weight.type as FixedSizeList).valueType).toMatchObject({ typeId: Type.Float, precision: Precision.SINGLE });
    expect(Array.from(table.getChild("q_proj.weight")!.get(0)!.toArray() as Float32Array)).toEqual(Array.from(w));
    expect(JSON.parse(bias.metadata.get("ARROW:extension:metadata")!)).toEqual({ shape: [4] });
  });

  it("stores float16 as IEEE binary16 bit patterns", () => {
    const half = tableFromIPC(
      encodeShard(meta, [{ name: "b", shape: [6], data: new Float32Array([1, -2, 0.5, 65504, 2 ** -24, 0]) }], {
        dtype: "float16",
      }),
    );
    const type = half.schema.fields[0].type as FixedSizeList;
    expect(type.valueType).toMatchObject({ typeId: Type.Float, precision: Precision.HALF });
    const bits = (half.getChild("b")!.data[0] as Data<FixedSizeList>).children[0].values as Uint16Array;
    // binary16: sign | 5-bit exponent (bias 15) | 10-bit fraction
    expect(Array.from(bits.subarray(0, 6))).toEqual([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x0000]);
  });
});

/** A fixed-shape-tensor-like column built with Arrow's generic API: `rows` tensors of `listSize` values. */
function column(values: Float32Array | Float64Array | Uint16Array, element: Float, listSize: number, rows = 1) {
  const type = new FixedSizeList(listSize, new Field("item", element, true));
  // The element type decides how Arrow reads the buffer; the cast only satisfies makeData's overloads.
  const child = makeData({ type: element, length: values.length, nullCount: 0, data: values as Float32Array });
  return { type, data: makeData({ type, length: rows, nullCount: 0, child }) };
}

/** Writes an Arrow IPC file with Arrow's generic writer (no offtune code). */
function foreignFile(
  columns: Array<{ name: string; type: DataType; data: Data; fieldMetadata?: Record<string, string> }>,
  metadata: Map<string, string> = specMetadata,
  rows = 1,
): Uint8Array {
  const fields = columns.map((c) => new Field(c.name, c.type, true, new Map(Object.entries(c.fieldMetadata ?? {}))));
  const schema = new Schema(fields, metadata);
  const struct = makeData({
    type: new Struct(fields),
    length: rows,
    nullCount: 0,
    children: columns.map((c) => c.data),
  });
  return tableToIPC(new Table([new RecordBatch(schema, struct)]), "file");
}

const tensorMeta = (extension: string) => ({
  "ARROW:extension:name": "arrow.fixed_shape_tensor",
  "ARROW:extension:metadata": extension,
});

describe("decodeShard on files from other writers", () => {
  it("reads spaced JSON, dim_names, an identity permutation, extra keys and float16", () => {
    const w = column(new Float32Array([1, 2, 3, 4, 5, 6]), new Float32(), 6);
    const h = column(new Uint16Array([0x3c00, 0xc000]), new Float16(), 2);
    const extra = new Map([...specMetadata, ["pandas", "{}"], ["written_by", "someone else"]]);
    const out = decodeShard(
      foreignFile(
        [
          {
            name: "w",
            ...w,
            fieldMetadata: tensorMeta('{ "shape": [2, 3], "dim_names": ["in", "out"], "permutation": [0, 1] }'),
          },
          { name: "h", ...h, fieldMetadata: tensorMeta('{"shape":[2]}') },
        ],
        extra,
      ),
      "foreign.arrow",
    );
    expect(out.meta).toEqual(meta);
    expect(out.tensors.map((t) => [t.name, t.shape, Array.from(t.data)])).toEqual([
      ["w", [2, 3], [1, 2, 3, 4, 5, 6]],
      ["h", [2], [1, -2]],
    ]);
  });

  const one = (
    extension: string,
    values: Float32Array | Float64Array = new Float32Array(6),
    element: Float = new Float32(),
  ) => [
    { name: "w", ...column(values, element, values.length), fieldMetadata: tensorMeta(extension) },
  ];
  /** Why decodeShard refuses `bytes` (or what went wrong instead). */
  const refuse = (bytes: Uint8Array): string => {
    try {
      decodeShard(bytes, "f.arrow");
      return "accepted";
    } catch (e) {
      return e instanceof CheckpointError ? e.message : `not a CheckpointError: ${e}`;
    }
  };

  it("refuses a column that is not a fixed_shape_tensor", () => {
    const plain = column(new Float32Array(6), new Float32(), 6);
    expect(refuse(foreignFile([{ name: "w", ...plain }]))).toBe(
      `Cannot read shard "f.arrow": column "w" is not an arrow.fixed_shape_tensor (extension name: none)`,
    );
    const other = { "ARROW:extension:name": "arrow.uuid", "ARROW:extension:metadata": "" };
    expect(refuse(foreignFile([{ name: "w", ...plain, fieldMetadata: other }]))).toContain(
      `is not an arrow.fixed_shape_tensor (extension name: "arrow.uuid")`,
    );
    const flat = makeData({ type: new Float32(), length: 1, nullCount: 0, data: new Float32Array([1]) });
    expect(
      refuse(foreignFile([{ name: "x", type: new Float32(), data: flat, fieldMetadata: tensorMeta('{"shape":[1]}') }])),
    )
      .toBe(`Cannot read shard "f.arrow": column "x" has storage type Float32, expected FixedSizeList`);
  });

  it("refuses shape metadata that disagrees with the list size, or is missing", () => {
    expect(refuse(foreignFile(one('{"shape":[2,2]}')))).toBe(
      `Cannot read shard "f.arrow": column "w" has shape [2, 2] (4 elements) but list size 6`,
    );
    expect(refuse(foreignFile(one('{"dim_names":["a"]}')))).toContain(`without a valid "shape"`);
    expect(refuse(foreignFile(one('{"shape":[2,-3]}')))).toContain(`without a valid "shape"`);
    expect(refuse(foreignFile(one("shape=2x3")))).toContain(`has extension metadata "shape=2x3", not JSON`);
  });

  it("refuses a non-identity permutation and a float64 element type", () => {
    expect(refuse(foreignFile(one('{"shape":[2,3],"permutation":[1,0]}')))).toContain(
      `has permutation [1,0]; offtune reads row-major tensors only`,
    );
    expect(refuse(foreignFile(one('{"shape":[6]}', new Float64Array(6), new Float64())))).toContain(
      `has element type Float64, expected float32 or float16`,
    );
  });

  it("refuses an unsupported format version, a missing key and a malformed block", () => {
    const withMeta = (key: string, value?: string) => {
      const m = new Map(specMetadata);
      if (value === undefined) m.delete(key);
      else m.set(key, value);
      return foreignFile(one('{"shape":[6]}'), m);
    };
    expect(refuse(withMeta("offtune.format_version", "1"))).toBe(
      `Cannot read shard "f.arrow": unsupported format version "1" (this offtune reads version 2)`,
    );
    expect(refuse(withMeta("offtune.format_version"))).toBe(
      `Cannot read shard "f.arrow": schema metadata lacks "offtune.format_version"`,
    );
    expect(refuse(withMeta("offtune.block", "07"))).toContain(`"offtune.block" is "07", not a block index or "outer"`);
    expect(refuse(withMeta("offtune.settings", "{r:8}"))).toContain(`"offtune.settings" is not valid JSON`);
    expect(refuse(withMeta("offtune.role", "outer"))).toContain(`block 11 does not go with role "outer"`);
  });

  it("refuses two rows, a NaN and a duplicate column", () => {
    const two = column(new Float32Array(4), new Float32(), 2, 2);
    expect(refuse(foreignFile([{ name: "w", ...two, fieldMetadata: tensorMeta('{"shape":[2]}') }], specMetadata, 2)))
      .toBe(`Cannot read shard "f.arrow": expected one row, found 2`);
    expect(refuse(foreignFile(one('{"shape":[3]}', new Float32Array([0, NaN, 1]))))).toBe(
      `Cannot read shard "f.arrow": column "w" holds NaN at flat index 1`,
    );
    const col = one('{"shape":[6]}')[0];
    expect(refuse(foreignFile([col, col]))).toContain(`column "w" appears twice`);
  });

  it("refuses the IPC stream format (shards are IPC files)", () => {
    const stream = tableToIPC(tableFromIPC(encodeShard(meta, [])), "stream");
    expect(refuse(stream)).toBe(`Cannot read shard "f.arrow": not an Arrow IPC file (it does not start with "ARROW1")`);
  });
});

const PYTHON = "/usr/bin/python3";
const hasPyarrow = spawnSync(PYTHON, ["-c", "import pyarrow, numpy"], { stdio: "ignore" }).status === 0;
if (!hasPyarrow) {
  console.log(
    `Skipping pyarrow interop: ${PYTHON} cannot import pyarrow and numpy (Debian bookworm has no python3-pyarrow package)`,
  );
}

function python(script: string, ...args: string[]): string {
  const run = spawnSync(PYTHON, ["-c", script, ...args], { encoding: "utf8" });
  if (run.status !== 0) throw new Error(`python failed: ${run.stderr}`);
  return run.stdout;
}

describe.skipIf(!hasPyarrow)(`pyarrow interop${hasPyarrow ? "" : ` (skipped: needs ${PYTHON} with pyarrow and numpy)`}`, () => {
  it("pyarrow reads our shard as fixed_shape_tensor columns with our values", async () => {
    const path = join(root, "ours.arrow");
    const w = Float32Array.from({ length: 6 }, (_, i) => i / 8 - 0.25);
    writeShardFile(path, meta, [
      { name: "w", shape: [2, 3], data: w },
      { name: "h", shape: [2], data: new Float32Array([1.5, -3]) },
    ], { dtype: "float32" });
    const seen = JSON.parse(python(
      `
import json, sys, pyarrow as pa
t = pa.ipc.open_file(sys.argv[1]).read_all()
cols = []
for f in t.schema:
    arr = t.column(f.name).combine_chunks()
    cols.append({"name": f.name, "ext": f.type.extension_name, "shape": list(f.type.shape),
                 "values": arr.to_numpy_ndarray()[0].ravel().astype("float64").tolist()})
print(json.dumps({"rows": t.num_rows, "metadata": {k.decode(): v.decode() for k, v in t.schema.metadata.items()}, "cols": cols}))
`,
      path,
    ));
    expect(seen.rows).toBe(1);
    expect(seen.metadata).toEqual(Object.fromEntries(specMetadata));
    expect(seen.cols).toEqual([
      { name: "w", ext: "arrow.fixed_shape_tensor", shape: [2, 3], values: Array.from(w) },
      { name: "h", ext: "arrow.fixed_shape_tensor", shape: [2], values: [1.5, -3] },
    ]);
  });

  it("decodeShard reads a shard pyarrow wrote with FixedShapeTensorType", async () => {
    const path = join(root, "theirs.arrow");
    python(
      `
import sys, json, numpy as np, pyarrow as pa
w = pa.FixedShapeTensorArray.from_numpy_ndarray(np.arange(6, dtype=np.float32).reshape(1, 2, 3) / 4)
h = pa.FixedShapeTensorArray.from_numpy_ndarray(np.array([[1.5, -2.0, 0.25]], dtype=np.float16))
meta = {"offtune.format_version": "2", "offtune.block": "11", "offtune.role": "adapter",
        "offtune.method": "lora", "offtune.settings": json.dumps({"r": 8}), "offtune.source_hash": "cafe",
        "offtune.config_sha256": "beef"}
table = pa.table({"w": w, "h": h}).replace_schema_metadata(meta)
with pa.ipc.new_file(sys.argv[1], table.schema) as out:
    out.write_table(table)
`,
      path,
    );
    const out = await readShardFile(path);
    expect(out.meta).toEqual(meta);
    expect(out.tensors.map((t) => [t.name, t.shape, Array.from(t.data)])).toEqual([
      ["w", [2, 3], [0, 0.25, 0.5, 0.75, 1, 1.25]],
      ["h", [3], [1.5, -2, 0.25]],
    ]);
  });
});
