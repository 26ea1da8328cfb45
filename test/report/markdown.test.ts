// report.md states each task's chance level (when the runs recorded it) and
// says what the perplexities, the plug-in's above all, measure.
import { describe, expect, it } from "vitest";
import { aggregateRuns } from "../../src/report/aggregate.ts";
import { formatInterval, renderMarkdown } from "../../src/report/markdown.ts";
import type { RunResult } from "../../src/report/run_result.ts";
import { fixtureResults } from "./fixture.ts";

const markdown = (results: RunResult[]) =>
  renderMarkdown(aggregateRuns(results.map((result) => ({ path: `runs/${result.label}/seed-${result.seed}`, result }))), "T");

/** The fixture with chance 50% on piqa (two choices) and 25% on arc_easy (four). */
const withChance = (): RunResult[] =>
  fixtureResults().map((r) => ({
    ...r,
    tasks: { piqa: { ...r.tasks.piqa, chance: 50 }, arc_easy: { ...r.tasks.arc_easy, chance: 25 } },
  }));

describe("renderMarkdown", () => {
  it("puts each task's chance in its heading and their mean under the average table", () => {
    const text = markdown(withChance());
    expect(text).toContain("## arc_easy (40 examples, chance 25.00%)");
    expect(text).toContain("## piqa (100 examples, chance 50.00%)");
    expect(text).toContain("Chance (answering at random) averages 37.50% over the tasks");
  });

  it("leaves chance out for runs that did not record it", () => {
    const text = markdown(fixtureResults());
    expect(text).toContain("## piqa (100 examples)\n");
    expect(text).not.toContain("Chance (answering at random)");
  });

  it("explains the plug-in perplexity above the perplexity table", () => {
    const text = markdown(fixtureResults());
    const section = text.slice(text.indexOf("## Perplexity"), text.indexOf("| Method", text.indexOf("## Perplexity")));
    expect(section).toContain("Plug-in the original model with the adapter tuned on the first task of `experiment --tasks`");
    expect(section).toContain("general held-out text, not of a task");
  });
});

describe("report.md's ratio, build time and intervals", () => {
  it("shows each row's ratio and build seconds, – where unknown", () => {
    const text = markdown(fixtureResults().map((r) => (r.label === "gradot" ? { ...r, emulator_build_s: 12.34 } : r)));
    expect(text).toMatch(/\| Method +\| Ratio \| +Full ZS \| .*\| Emu size \| Build s \| Seeds \|/);
    expect(text).toMatch(/\| gradot +\| +0\.5 \| .*\| +55\.0% \| +12\.3 \| +3 \|/);
    expect(text).toMatch(/\| ot-layerdrop +\| +– \| .*\| +50\.0% \| +– \| +1 \|/);
  });

  it("compares each row with its reference and states each row's claims", () => {
    // ot-layerdrop (no ratio) has no default reference; --baseline gives it one
    expect(markdown(fixtureResults())).toContain("No row has a reference");
    const report = aggregateRuns(
      fixtureResults().map((result) => ({ path: `runs/${result.label}/seed-${result.seed}`, result })),
      { baseline: "gradot" },
    );
    const text = renderMarkdown(report, "T");
    // The rows share no seed (gradot 0–2, ot-layerdrop 7): no pairs for the tuned columns. Emu ZS by
    // task, ot-layerdrop − gradot's seed mean: arc_easy 26 − 26, piqa 29 − 33; mean −2, s = √8, t(0.975, 1) = 12.706
    expect(text).toMatch(/\| ot-layerdrop \| +gradot \| +0 \| +– \| +– \| −2\.00 \[−27\.41, \+23\.41\] \|/);
    // ot-layerdrop's Plug-in − Full FT: 48 − 70 and 58 − 80, both −22
    expect(text).toMatch(/\| ot-layerdrop \| +−22\.00 \[−22\.00, −22\.00\] \|/);
  });

  it("formats a signed mean and interval, or the mean and n without one", () => {
    expect(formatInterval({ mean: 1.254, lo: 0.49, hi: 2.011, n: 24 })).toBe("+1.25 [+0.49, +2.01]");
    expect(formatInterval({ mean: -2.79, lo: -3.7, hi: -1.886, n: 24 })).toBe("−2.79 [−3.70, −1.89]");
    expect(formatInterval({ mean: 0.5, lo: null, hi: null, n: 1 })).toBe("+0.50 (n = 1)");
    expect(formatInterval(null)).toBe("–");
  });
});
