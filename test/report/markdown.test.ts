// report.md states each task's chance level (when the runs recorded it) and
// says what the perplexities, the plug-in's above all, measure.
import { describe, expect, it } from "vitest";
import { aggregateRuns } from "../../src/report/aggregate.ts";
import { renderMarkdown } from "../../src/report/markdown.ts";
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
