import { tf, initBackend } from "./src/tensor/backend.ts";
await initBackend("wasm", true);
const { originalWasmKernel } = await import("./src/tensor/wasm_kernels.ts");
const ref = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => { const c = tf.engine().backendName; return tf.einsum("bmk,bkn->bmn", tf.broadcastTo(a, [Math.max(a.shape[0], b.shape[0]), a.shape[1], a.shape[2]]), tf.broadcastTo(b, [Math.max(a.shape[0], b.shape[0]), b.shape[1], b.shape[2]])); });
function run(name: "BatchMatMul" | "_FusedMatMul", B: number, bB: number, m: number, k: number, n: number, act?: string, withBias = false) {
  return tf.tidy(() => {
  const a = tf.randomNormal([B, m, k]), b = tf.randomNormal([bB, k, n]), bias = tf.randomNormal([n]);
  const inputs: any = withBias ? {a, b, bias} : {a, b};
  const info = originalWasmKernel(name)!({inputs, backend: tf.backend(), attrs: {transposeA: false, transposeB: false, activation: act ?? "linear", leakyreluAlpha: 0.2}}) as tf.TensorInfo;
  const y = tf.engine().makeTensorFromTensorInfo(info);
  // reference: loop over batches with 2-D plain matmul
  const outs = [];
  for (let i = 0; i < Math.max(B, bB); i++) {
    let r = tf.matMul(a.slice([B === 1 ? 0 : i, 0, 0], [1, m, k]).reshape([m, k]), b.slice([bB === 1 ? 0 : i, 0, 0], [1, k, n]).reshape([k, n]));
    if (withBias) r = r.add(bias); if (act === "relu") r = tf.relu(r);
    outs.push(r);
  }
  const d = tf.max(tf.abs(y.sub(tf.stack(outs)))).dataSync()[0];
  console.log(name, B, bB, m, k, n, act ?? "", withBias ? "bias" : "", d.toExponential(2));
  });
}
for (const [B, bB] of [[1,1],[2,1],[2,2],[1,2]]) for (const s of [[5,7,6],[64,64,64],[128,96,80]]) { run("BatchMatMul", B, bB, s[0], s[1], s[2]); run("_FusedMatMul", B, bB, s[0], s[1], s[2], "relu", false); run("_FusedMatMul", B, bB, s[0], s[1], s[2], "linear", true); }
