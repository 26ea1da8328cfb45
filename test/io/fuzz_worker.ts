// The worker of fuzz.test.ts: decodes one fuzzed file per request and says
// how that ended. A clean decode must also be consistent (every tensor holds
// as many finite values as its shape; a shard's footer-only header agrees
// with its full decode), else it counts as a failure.
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { serveRequests } from "../../src/distributed/worker_pool.ts";
import { openCheckpoint } from "../../src/io/checkpoint.ts";
import { CheckpointError } from "../../src/io/errors.ts";
import { MANIFEST_FILE, verifyPackage } from "../../src/io/manifest.ts";
import { firstNonFinite, shapeSize } from "../../src/io/shard_schema.ts";
import { decodeShard, readShardHeader } from "../../src/io/shard_reader.ts";
import type { FuzzOutcome, FuzzRequest } from "./fuzz.ts";

/** Throws (an untyped failure) unless every tensor holds `prod(shape)` finite values. */
function checkConsistent(tensors: Array<{ name: string; shape: number[]; data: ArrayLike<number> }>): void {
  for (const t of tensors) {
    if (t.data.length !== shapeSize(t.shape)) throw new Error(`decoded "${t.name}" of shape [${t.shape}] with ${t.data.length} values`);
    if (firstNonFinite(t.data) >= 0) throw new Error(`decoded "${t.name}" with a non-finite value`);
  }
}

async function decode(request: FuzzRequest): Promise<void> {
  if (request.kind === "shard") {
    const path = join(request.dir!, "fuzz.arrow");
    await writeFile(path, request.bytes);
    const header = await readShardHeader(path).catch((e: unknown) => e);
    const decoded = decodeShard(request.bytes, path);
    checkConsistent(decoded.tensors);
    if (header instanceof Error) throw new Error(`readShardHeader refused a shard decodeShard read: ${header.message}`);
    const seen = JSON.stringify([decoded.meta, decoded.tensors.map((t) => [t.name, t.shape])]);
    if (JSON.stringify([header.meta, header.tensors.map((t) => [t.name, t.shape])]) !== seen) {
      throw new Error("readShardHeader and decodeShard disagree");
    }
  } else if (request.kind === "manifest") {
    await writeFile(join(request.dir!, MANIFEST_FILE), request.bytes);
    await verifyPackage(request.dir!);
  } else {
    await writeFile(join(request.dir!, "model.safetensors"), request.bytes);
    const reader = await openCheckpoint(request.dir!);
    try {
      const tensors = [];
      for (const info of reader.tensors()) tensors.push({ name: info.name, shape: info.shape, data: await reader.read(info.name) });
      checkConsistent(tensors);
    } finally {
      await reader.close();
    }
  }
}

serveRequests<FuzzRequest, FuzzOutcome>(async (request) => {
  try {
    await decode(request);
    return { value: { result: "decoded" } };
  } catch (e) {
    if (e instanceof CheckpointError) return { value: { result: "typed" } };
    return { value: { result: "untyped", error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) } };
  }
});
