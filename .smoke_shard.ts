import { encodeShard } from "./src/io/shard_writer.ts";
import { decodeShard } from "./src/io/shard_reader.ts";
const meta = { block: 0, role: "adapter" as const, method: "", settings: {}, sourceHash: "" };
const b = encodeShard(meta, [{ name: "w", shape: [2], data: new Float32Array([1, 2]) }]);
console.log(Array.from(b.subarray(0, 24)));
for (const at of [8, 12, 16]) {
  const c = b.slice(); c.set([0xff, 0xff, 0xff, 0x7f], at);
  try { decodeShard(c, "x"); console.log(at, "ok"); } catch (e) { console.log(at, (e as Error).message); }
}
// footer length corrupt
const c = b.slice(); c.set([0xff, 0xff, 0xff, 0x7f], c.length - 10);
try { decodeShard(c, "x"); console.log("ok"); } catch (e) { console.log("footer", (e as Error).message); }
