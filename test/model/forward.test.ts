/**
 * lmLoss against a brute-force cross-entropy written with plain loops.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { lmLoss } from "../../src/model/forward.ts";
import { initBackend, tf } from "../../src/tensor/backend.ts";

beforeAll(async () => {
  await initBackend("wasm", true);
});

/** Mean over selected targets of -log softmax(logits[b, t])[ids[b, t + 1]], in float64. */
function bruteForce(logits: number[][][], ids: number[][], mask?: number[][]): number {
  let total = 0;
  let count = 0;
  for (let b = 0; b < ids.length; b++) {
    for (let t = 0; t + 1 < ids[b].length; t++) {
      if (mask && mask[b][t + 1] === 0) continue;
      const row = logits[b][t];
      const max = Math.max(...row);
      const logSum = max + Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
      total += logSum - row[ids[b][t + 1]];
      count += 1;
    }
  }
  return total / count;
}

function seeded(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

describe("lmLoss", () => {
  const rand = seeded(7);
  const [B, T, V] = [3, 6, 11];
  const logits = Array.from({ length: B }, () =>
    Array.from({ length: T }, () => Array.from({ length: V }, () => (rand() - 0.5) * 8))
  );
  const ids = Array.from({ length: B }, () => Array.from({ length: T }, () => Math.floor(rand() * V)));
  const mask = [
    [0, 0, 0, 1, 1, 1],
    [1, 1, 1, 1, 1, 0],
    [0, 0, 0, 0, 0, 1],
  ];

  it("equals the brute-force shifted cross-entropy, with and without a mask", () => {
    const before = tf.memory().numTensors;
    const l = tf.tensor3d(logits);
    const i = tf.tensor2d(ids, undefined, "int32");
    const m = tf.tensor2d(mask, undefined, "int32");
    const plain = lmLoss(l, i);
    const masked = lmLoss(l, i, m);
    expect(plain.shape).toEqual([]);
    expect(plain.dataSync()[0]).toBeCloseTo(bruteForce(logits, ids), 5);
    expect(masked.dataSync()[0]).toBeCloseTo(bruteForce(logits, ids, mask), 5);
    expect(masked.dataSync()[0]).not.toBeCloseTo(plain.dataSync()[0], 3);
    tf.dispose([l, i, m, plain, masked]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("rejects a mask that selects no target and a one-token sequence", () => {
    const before = tf.memory().numTensors;
    const l = tf.tensor3d(logits);
    const i = tf.tensor2d(ids, undefined, "int32");
    const onlyFirst = tf.tensor2d(mask.map((row) => row.map((_, t) => (t === 0 ? 1 : 0))), undefined, "int32");
    expect(() => lmLoss(l, i, onlyFirst)).toThrow("The loss mask selects no target token");
    const short = tf.slice(l, [0, 0, 0], [B, 1, V]);
    const shortIds = tf.slice(i, [0, 0], [B, 1]);
    expect(() => lmLoss(short, shortIds)).toThrow("at least 2 tokens");
    tf.dispose([l, i, onlyFirst, short, shortIds]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("has the gradient of the brute-force loss: (softmax − onehot) · w / W, zero where no target counts", () => {
    const l = tf.tensor3d(logits);
    const i = tf.tensor2d(ids, undefined, "int32");
    const m = tf.tensor2d(mask, undefined, "int32");
    const got = tf.grad((x: tf.Tensor) => lmLoss(x, i, m))(l).arraySync() as number[][][];
    const count = mask.flat().filter((v, k) => k % T !== 0 && v !== 0).length;
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const counted = t + 1 < T && mask[b][t + 1] !== 0;
        const row = logits[b][t];
        const max = Math.max(...row);
        const sum = row.reduce((a, v) => a + Math.exp(v - max), 0);
        for (let v = 0; v < V; v++) {
          const want = counted ? (Math.exp(row[v] - max) / sum - (v === ids[b][t + 1] ? 1 : 0)) / count : 0;
          expect(got[b][t][v]).toBeCloseTo(want, 6);
        }
      }
    }
    tf.dispose([l, i, m]);
  });

  it("has the brute-force gradient when most rows have a target (all rows through the softmax), masked or not", () => {
    const mostly = [
      [1, 1, 0, 1, 1, 1],
      [1, 1, 1, 1, 1, 0],
      [1, 0, 1, 1, 1, 1],
    ]; // 12 of the 18 rows have a target: at least half
    for (const m of [undefined, mostly]) gradientAgainstBruteForce(m);
  });

  function gradientAgainstBruteForce(m: number[][] | undefined): void {
    const l = tf.tensor3d(logits);
    const i = tf.tensor2d(ids, undefined, "int32");
    const maskTensor = m && tf.tensor2d(m, undefined, "int32");
    const before = tf.memory().numTensors;
    const gradient = tf.grad((x: tf.Tensor) => lmLoss(x, i, maskTensor))(l);
    const got = gradient.arraySync() as number[][][];
    gradient.dispose();
    expect(tf.memory().numTensors).toBe(before); // nothing left behind
    const counted = (b: number, t: number) => t + 1 < T && (!m || m[b][t + 1] !== 0);
    const count = ids.flatMap((row, b) => row.map((_, t) => counted(b, t))).filter(Boolean).length;
    expect(count).toBe(m ? 12 : B * (T - 1));
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < T; t++) {
        const row = logits[b][t];
        const max = Math.max(...row);
        const sum = row.reduce((a, v) => a + Math.exp(v - max), 0);
        for (let v = 0; v < V; v++) {
          const want = counted(b, t) ? (Math.exp(row[v] - max) / sum - (v === ids[b][t + 1] ? 1 : 0)) / count : 0;
          expect(got[b][t][v]).toBeCloseTo(want, 6);
          if (!counted(b, t)) expect(Object.is(got[b][t][v], 0)).toBe(true); // exactly +0 on the rows without a target
        }
      }
    }
    tf.dispose([l, i, ...(maskTensor ? [maskTensor] : [])]);
  }

  it("takes a row exactly when its target's probability is below float32's normal range", () => {
    // Position (1, 2)'s target sits 200 nats below the other logits: p_target ≈ e^-200 / V underflows float32.
    const far = logits.map((seq, b) => seq.map((row, t) => row.map((v, k) => (b === 1 && t === 2 && k === ids[1][3] ? -200 : v))));
    const l = tf.tensor3d(far);
    const i = tf.tensor2d(ids, undefined, "int32");
    const loss = lmLoss(l, i);
    const want = bruteForce(far, ids);
    expect(want).toBeGreaterThan(200 / (B * (T - 1)));
    expect(loss.dataSync()[0]).toBeCloseTo(want, 5);
    tf.dispose([l, i, loss]);
  });

  it("rejects a target outside the vocabulary, naming it", () => {
    const l = tf.tensor3d(logits);
    const bad = tf.tensor2d(ids.map((row, b) => row.map((id, t) => (b === 1 && t === 4 ? V : id))), undefined, "int32");
    expect(() => lmLoss(l, bad)).toThrow(`Target token ${V} (sequence 1, position 4) is outside the vocabulary of ${V} logits`);
    tf.dispose([l, bad]);
  });
});
