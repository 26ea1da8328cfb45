import { describe, expect, test } from "vitest";
import { chainTrainingLogs, layerDropCurveSvg, parseTrainingLog, trainingCurveSvg } from "../../src/report/training_curve.ts";

describe("training curve", () => {
  test("plots one smoothed train path and one point per validation loss", () => {
    const text = [
      { step: 1, tokens: 1000, loss: 8, val_loss: null },
      { step: 2, tokens: 2000, loss: 6, val_loss: 6.5 },
      { step: 3, tokens: 3000, loss: 4, val_loss: null },
      { step: 4, tokens: 4000, loss: 2, val_loss: 3.5 },
    ].map((l) => JSON.stringify(l)).join("\n");
    const lines = parseTrainingLog(text, "log.jsonl");
    const svg = trainingCurveSvg(lines, "test", 2);
    expect(svg.match(/class="valid"/g)?.length).toBe(2);
    expect(svg.match(/class="train"/g)?.length).toBe(1);
    // 4 path vertices: M then 3 L.
    const d = /class="train" d="([^"]+)"/.exec(svg)![1];
    expect(d.split(" ").length).toBe(4);
  });

  test("draws the step-0 line of a run started from a checkpoint as a validation point only", () => {
    const text = [
      { step: 0, tokens: 0, loss: null, lr: null, grad_norm: null, val_loss: 4.5 },
      { step: 1, tokens: 1000, loss: 4.4, val_loss: null },
      { step: 2, tokens: 2000, loss: 4.2, val_loss: 4.3 },
    ].map((l) => JSON.stringify(l)).join("\n");
    const lines = parseTrainingLog(text, "log.jsonl");
    expect(lines[0]).toEqual({ step: 0, tokens: 0, loss: null, val_loss: 4.5 });
    const svg = trainingCurveSvg(lines, "test", 2);
    expect(svg.match(/class="valid"/g)?.length).toBe(2);
    expect(/class="train" d="([^"]+)"/.exec(svg)![1].split(" ").length).toBe(2); // steps 1 and 2
    expect(() => parseTrainingLog('{"step":3,"tokens":1,"loss":null,"val_loss":4}\n', "log.jsonl")).toThrow(/line 1/);
    expect(() => trainingCurveSvg(lines.slice(0, 1), "test")).toThrow(/without a trained step/);
  });

  test("names the file and line of a malformed log", () => {
    expect(() => parseTrainingLog('{"step":1}\n', "runs/log.jsonl")).toThrow(/runs\/log\.jsonl" line 1/);
  });

  test("draws the tracked perplexities of the model and its LayerDrop, with the last increase", () => {
    const text = [
      { step: 1, tokens: 1e6, loss: 6, val_loss: null, track_val_loss: 6, track_layerdrop_val_loss: 6.1 },
      { step: 2, tokens: 2e6, loss: 5, val_loss: 5 },
      { step: 3, tokens: 3e6, loss: 4, val_loss: null, track_val_loss: 4, track_layerdrop_val_loss: Math.log(1.5) + 4 },
    ].map((l) => JSON.stringify(l)).join("\n");
    const lines = parseTrainingLog(text, "log.jsonl");
    expect(lines[1].track_val_loss).toBeUndefined();
    const svg = layerDropCurveSvg(lines, "t");
    for (const k of [0, 1]) {
      const d = new RegExp(`class="track-${k}" d="([^"]+)"`).exec(svg)![1];
      expect(d.split(" ").length).toBe(2); // one vertex per tracking step
    }
    expect(svg).toContain(`ppl ${Math.exp(4).toFixed(1)} vs ${(1.5 * Math.exp(4)).toFixed(1)} (+50%)`);
    expect(() => layerDropCurveSvg(lines.slice(1, 2), "t")).toThrow(/no tracked LayerDrop losses/);
  });

  test("chains a run and its --init continuation into one curve, steps and tokens following on", () => {
    const first = parseTrainingLog(
      [
        { step: 1, tokens: 1000, loss: 8, val_loss: null },
        { step: 2, tokens: 2000, loss: 6, val_loss: 6.5, track_val_loss: 6.5, track_layerdrop_val_loss: 7 },
      ].map((l) => JSON.stringify(l)).join("\n"),
      "a.jsonl",
    );
    const continued = parseTrainingLog(
      [
        { step: 0, tokens: 0, loss: null, val_loss: 6.4, track_val_loss: 6.4, track_layerdrop_val_loss: 7.1 },
        { step: 1, tokens: 500, loss: 5.5, val_loss: null },
        { step: 2, tokens: 1000, loss: 5, val_loss: 5.2, track_val_loss: 5.2, track_layerdrop_val_loss: 6 },
      ].map((l) => JSON.stringify(l)).join("\n"),
      "b.jsonl",
    );
    const lines = chainTrainingLogs([{ lines: first, source: "a.jsonl" }, { lines: continued, source: "b.jsonl" }]);
    expect(lines.map((l) => [l.step, l.tokens])).toEqual([[1, 1000], [2, 2000], [2, 2000], [3, 2500], [4, 3000]]);
    expect(lines[4].val_loss).toBe(5.2);
    // The LayerDrop plot spans both logs: three tracking points, the x axis to 3,000 tokens.
    const d = /class="track-0" d="([^"]+)"/.exec(layerDropCurveSvg(lines, "t"))![1];
    expect(d.split(" ").length).toBe(3);
    expect(chainTrainingLogs([{ lines: first, source: "a.jsonl" }])).toEqual(first);
    // A second log that is not a continuation (no step-0 line) is refused, naming it.
    expect(() => chainTrainingLogs([{ lines: first, source: "a.jsonl" }, { lines: first, source: "c.jsonl" }]))
      .toThrow(/"c\.jsonl" does not continue/);
    const shuffled = [continued[0], continued[2], continued[1]];
    expect(() => chainTrainingLogs([{ lines: first, source: "a.jsonl" }, { lines: shuffled, source: "b.jsonl" }]))
      .toThrow(/"b\.jsonl" line 3: step 1 does not follow step 2/);
  });
});
