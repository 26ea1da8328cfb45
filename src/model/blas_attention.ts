/**
 * Causal attention as one op whose products are OpenBLAS `sgemm` calls on
 * strided views of the tensors' heap memory, with its gradient written out
 * (docs/DESIGN.md "Tensors").
 *
 * Built from tfjs ops, attention transposes `q`, `k`, `v` from `[B, T, H, hd]`
 * to `[B, H, T, hd]` and its output back, adds a mask tensor, and the tape
 * adds the transposes' and the softmax's own gradients: 2.2 ms forward and
 * backward per block on the fixtures/base shape (`[4, 128, 2, 64]`), about
 * an eighth of a pretraining step. Here each head's product reads its `q`
 * (or `k`, `v`) rows in place, a row stride of `H·hd` apart, and writes its
 * output rows in place: no transposes. The softmax is the backend's kernel;
 * its gradient `dS = P ⊙ (dP − rowsum(dP ⊙ P))` three elementwise kernels.
 *
 * Used by `causalAttention` (src/model/layers.ts) on the wasm backend when
 * OpenBLAS is loaded; elsewhere that function composes tfjs ops.
 *
 * @module
 */
import type { Tensor } from "@tensorflow/tfjs";
import { tf } from "../tensor/backend.ts";
import { filledTensor, peekValues } from "../tensor/heap_view.ts";
import type { LinalgLibrary } from "../linalg/lapack_ffi.ts";

/** Where head `h` of sequence `s` starts in `[B, T, heads, hd]` (its rows are `heads·hd` apart). */
const headStart = (s: number, h: number, t: number, heads: number, hd: number): number => (s * t * heads + h) * hd;

/** The masked score of a key after its query (exp gives exactly 0, as the tfjs path's additive mask). */
const MASKED = -1e9;

/**
 * `softmax(q kᵀ + causal mask) v` per head, `[B, T, H·hd]`, for `q` `[B, T, H, hd]`
 * (already scaled) and `k`, `v` `[B, T, Hkv, hd]` (query head `h` reads
 * key/value head `floor(h / (H / Hkv))`), differentiable in all three.
 */
export function blasCausalAttention(q: Tensor, k: Tensor, v: Tensor, lib: LinalgLibrary): Tensor {
  const [b, t, heads, hd] = q.shape as [number, number, number, number];
  const kvHeads = k.shape[2] as number;
  const group = heads / kvHeads;
  const qStride = heads * hd;
  const kvStride = kvHeads * hd;
  /** For each (sequence, head): the offsets of its q rows, its k/v rows and its `[T, T]` scores. */
  const eachHead = (f: (qAt: number, kvAt: number, scoresAt: number, firstOfGroup: boolean) => void) => {
    for (let s = 0; s < b; s++) {
      for (let h = 0; h < heads; h++) {
        f(headStart(s, h, t, heads, hd), headStart(s, Math.floor(h / group), t, kvHeads, hd), (s * heads + h) * t * t, h % group === 0);
      }
    }
  };
  const attend = tf.customGrad((...args) => {
    const [qIn, kIn, vIn, save] = args as [Tensor, Tensor, Tensor, tf.GradSaveFunc];
    const scores = filledTensor([b, heads, t, t], (out) => { // q kᵀ per head, masked
      const qv = peekValues(qIn);
      const kv = peekValues(kIn);
      eachHead((qAt, kvAt, at) => lib.sgemm(false, true, t, t, hd, qv.subarray(qAt), qStride, kv.subarray(kvAt), kvStride, out.subarray(at), t));
      maskAfterDiagonal(out, b * heads, t);
    });
    const probs = tf.softmax(scores); // [B, H, T, T]
    scores.dispose();
    const value = filledTensor([b, t, heads * hd], (out) => { // P v per head, written in place
      const pv = peekValues(probs);
      const vv = peekValues(vIn);
      eachHead((qAt, kvAt, at) => lib.sgemm(false, false, t, hd, t, pv.subarray(at), t, vv.subarray(kvAt), kvStride, out.subarray(qAt), qStride));
    });
    save([qIn, kIn, vIn, probs]);
    return {
      value,
      gradFunc: (dy, saved) => {
        const [qSaved, kSaved, vSaved, p] = saved;
        const g = dy as Tensor; // [B, T, H·hd]
        const dp = filledTensor([b, heads, t, t], (out) => { // dO vᵀ per head
          const gv = peekValues(g);
          const vv = peekValues(vSaved);
          eachHead((qAt, kvAt, at) => lib.sgemm(false, true, t, t, hd, gv.subarray(qAt), qStride, vv.subarray(kvAt), kvStride, out.subarray(at), t));
        });
        const ds = tf.tidy(() => tf.mul(p, tf.sub(dp, tf.sum(tf.mul(dp, p), -1, true)))); // [B, H, T, T]
        dp.dispose();
        const dq = filledTensor(qSaved.shape, (out) => { // dS k per head
          const dsv = peekValues(ds);
          const kv = peekValues(kSaved);
          eachHead((qAt, kvAt, at) => lib.sgemm(false, false, t, hd, t, dsv.subarray(at), t, kv.subarray(kvAt), kvStride, out.subarray(qAt), qStride));
        });
        // A key/value head sums the gradients of its group's query heads: the first overwrites, the rest add.
        const dk = filledTensor(kSaved.shape, (out) => { // dSᵀ q per head
          const dsv = peekValues(ds);
          const qv = peekValues(qSaved);
          eachHead((qAt, kvAt, at, first) =>
            lib.sgemm(true, false, t, hd, t, dsv.subarray(at), t, qv.subarray(qAt), qStride, out.subarray(kvAt), kvStride, first ? 0 : 1)
          );
        });
        const dv = filledTensor(vSaved.shape, (out) => { // Pᵀ dO per head
          const pv = peekValues(p);
          const gv = peekValues(g);
          eachHead((qAt, kvAt, at, first) =>
            lib.sgemm(true, false, t, hd, t, pv.subarray(at), t, gv.subarray(qAt), qStride, out.subarray(kvAt), kvStride, first ? 0 : 1)
          );
        });
        ds.dispose();
        return [dq, dk, dv];
      },
    };
  });
  return attend(q, k, v);
}

/** Sets every score of a key after its query to {@link MASKED}, in `count` `[T, T]` matrices. */
function maskAfterDiagonal(scores: Float32Array, count: number, t: number): void {
  for (let m = 0; m < count; m++) {
    for (let i = 0; i < t - 1; i++) scores.fill(MASKED, m * t * t + i * t + i + 1, m * t * t + (i + 1) * t);
  }
}
