import { describe, expect, test } from "vitest";
import { parseTrainingLog, trainingCurveSvg } from "../../src/report/training_curve.ts";

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

  test("names the file and line of a malformed log", () => {
    expect(() => parseTrainingLog('{"step":1}\n', "runs/log.jsonl")).toThrow(/runs\/log\.jsonl" line 1/);
  });
});
