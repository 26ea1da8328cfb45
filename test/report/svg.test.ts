import { describe, expect, it } from "vitest";
import { aggregateRuns, type Report } from "../../src/report/aggregate.ts";
import { linearScale, niceTicks } from "../../src/report/axis.ts";
import { frontierLines, frontierSvg } from "../../src/report/frontier.ts";
import type { RunResult } from "../../src/report/run_result.ts";
import { privacyPlaneSvg } from "../../src/report/privacy_plane.ts";
import { el, escapeXml, svgDocument, svgNumber } from "../../src/report/svg.ts";
import { AVERAGE_GROUP, taskBarsSvg } from "../../src/report/task_bars.ts";
import { fixtureResults } from "./fixture.ts";
import { findAll, parseXml, type XmlNode } from "./xml.ts";

const report = (): Report =>
  aggregateRuns(fixtureResults().map((result) => ({ path: `${result.label}/${result.seed}`, result })));

const byClass = (root: XmlNode, cls: string) => findAll(root, (n) => n.attributes.class === cls);
const num = (n: XmlNode, key: string) => Number(n.attributes[key]);

describe("the test XML parser", () => {
  it("refuses what is not well-formed (so passing it means something)", () => {
    for (const bad of ["<a><b></a></b>", "<a>x & y</a>", '<a b="1" b="2"/>', "<a b=1/>", "<a>", "<a/><b/>", "<a>1 < 2</a>", "text<a/>"]) {
      expect(() => parseXml(bad), bad).toThrow(/Not well-formed/);
    }
  });
  it("decodes entities", () => {
    expect(parseXml('<a t="&#34;x&#38;y&quot;">&lt;&#x41;</a>')).toMatchObject({ attributes: { t: '"x&y"' }, text: "<A" });
  });
});

describe("svg writer", () => {
  it("escapes text and attributes into well-formed XML", () => {
    const nasty = `a < b & "c" > 'd'`;
    const doc = parseXml(svgDocument(100, 50, [el("text", { "data-x": nasty }, nasty)]));
    expect(doc.name).toBe("svg");
    expect(doc.attributes.xmlns).toBe("http://www.w3.org/2000/svg");
    const text = findAll(doc, (n) => n.name === "text")[0];
    expect(text.text).toBe(nasty);
    expect(text.attributes["data-x"]).toBe(nasty);
    expect(escapeXml("<&>")).not.toMatch(/[<>]|&(?!#)/);
  });

  it("rounds numbers to 0.01 and refuses non-finite ones", () => {
    expect(svgNumber(1 / 3)).toBe("0.33");
    expect(svgNumber(-0.001)).toBe("0");
    expect(() => svgNumber(Number.NaN)).toThrow(/Cannot write NaN/);
    expect(() => svgDocument(10, 10, [el("circle", { r: Infinity })])).toThrow(/Infinity/);
  });

  it("refuses element and attribute names that would break the XML", () => {
    expect(() => svgDocument(10, 10, [el("a b")])).toThrow(/element named/);
    expect(() => svgDocument(10, 10, [el("g", { 'x="1" y': 2 })])).toThrow(/attribute named/);
  });
});

describe("niceTicks", () => {
  const cases: [number, number, number[]][] = [
    [0, 57, [0, 10, 20, 30, 40, 50, 60]],
    [-0.8, 5.3, [-1, 0, 1, 2, 3, 4, 5, 6]],
    [0.12, 0.5, [0.1, 0.2, 0.3, 0.4, 0.5]],
    [45.2, 51.3, [45, 46, 47, 48, 49, 50, 51, 52]],
    [5, 5, [4.4, 4.6, 4.8, 5, 5.2, 5.4, 5.6]],
  ];
  for (const [lo, hi, expected] of cases) {
    it(`covers [${lo}, ${hi}] with 1-2-5 steps`, () => {
      const t = niceTicks(lo, hi);
      expect(t.values).toEqual(expected);
      expect(t.lo).toBeLessThanOrEqual(lo);
      expect(t.hi).toBeGreaterThanOrEqual(hi);
      expect(t.values.map((v) => v.toFixed(t.decimals)).map(Number)).toEqual(expected);
    });
  }
  it("refuses a reversed or infinite range", () => {
    expect(() => niceTicks(2, 1)).toThrow(/\[2, 1\]/);
    expect(() => niceTicks(0, Infinity)).toThrow();
  });
  it("scales linearly, y axes upside down", () => {
    const y = linearScale([0, 60], [300, 40]);
    expect([y(0), y(60), y(30)]).toEqual([300, 40, 170]);
  });
});

describe("per-task bar chart", () => {
  it("draws one bar per task (and average) and series, and only measured ones", () => {
    const r = report();
    const [gradot, layerdrop] = r.rows;
    // ot-layerdrop measured all three series on both tasks: 3 groups × 3 bars
    const full = parseXml(taskBarsSvg(layerdrop, r.tasks, "acc_norm"));
    const bars = byClass(full, "bar");
    expect(bars).toHaveLength(9);
    expect(new Set(bars.map((b) => b.attributes["data-task"]))).toEqual(new Set([...r.tasks, AVERAGE_GROUP]));
    expect(byClass(full, "legend-item")).toHaveLength(3);
    expect(byClass(full, "group-label").map((n) => n.text)).toEqual([...r.tasks, AVERAGE_GROUP]);
    // gradot lacks Full FT on arc_easy (hence on the average): 3 × 2 + 1 bars
    const partial = parseXml(taskBarsSvg(gradot, r.tasks, "acc_norm"));
    const partialBars = byClass(partial, "bar");
    expect(partialBars).toHaveLength(7);
    expect(partialBars.filter((b) => b.attributes["data-series"] === "full_ft").map((b) => b.attributes["data-task"]))
      .toEqual(["piqa"]);
    expect(byClass(partial, "error-bar").length).toBeGreaterThan(0);
    expect(byClass(full, "error-bar")).toHaveLength(0); // one seed: no spread
  });

  it("draws bars from a common baseline with heights proportional to the values", () => {
    const r = report();
    const row = r.rows[1];
    const bars = byClass(parseXml(taskBarsSvg(row, r.tasks, "acc_norm")), "bar");
    const bar = (task: string, series: string) =>
      bars.find((b) => b.attributes["data-task"] === task && b.attributes["data-series"] === series)!;
    const bottoms = bars.map((b) => num(b, "y") + num(b, "height"));
    for (const b of bottoms) expect(b).toBeCloseTo(bottoms[0], 1);
    // plug-in 58 on arc_easy vs emulator FT 45 on piqa; full FT average 75
    expect(num(bar("arc_easy", "plug_in"), "height") / num(bar("piqa", "emulator_ft"), "height")).toBeCloseTo(58 / 45, 2);
    expect(num(bar(AVERAGE_GROUP, "full_ft"), "height") / num(bar(AVERAGE_GROUP, "plug_in"), "height")).toBeCloseTo(75 / 53, 2);
    expect(bar("piqa", "plug_in").children[0].text).toBe("Plug-in on piqa: 48.00");
  });
});

describe("utility/privacy plane", () => {
  it("draws one labelled point per row at (Δ, plug-in), with error bars where seeds vary", () => {
    const r = report();
    const doc = parseXml(privacyPlaneSvg(r.rows, r.tasks.length, "acc_norm"));
    const points = byClass(doc, "point");
    expect(points.map((p) => p.attributes["data-label"])).toEqual(["gradot", "ot-layerdrop"]);
    expect(byClass(doc, "point-label").map((t) => t.text)).toEqual(["gradot", "ot-layerdrop"]);
    const [g, l] = points;
    // gradot: Δ 32/3, plug-in 57; ot-layerdrop: Δ 5, plug-in 53 → gradot right of and above it
    expect(num(g, "cx")).toBeGreaterThan(num(l, "cx"));
    expect(num(g, "cy")).toBeLessThan(num(l, "cy"));
    // x is linear in Δ: the Δ = 0 line sits where extrapolating the two points puts it
    const zero = num(byClass(doc, "zero-line")[0], "x1");
    const perPoint = (num(g, "cx") - num(l, "cx")) / (32 / 3 - 5);
    expect(num(l, "cx") - 5 * perPoint).toBeCloseTo(zero, 0);
    // gradot has 3 seeds (two error bars), ot-layerdrop one (none)
    expect(byClass(doc, "error-bar")).toHaveLength(2);
  });

  it("stays well-formed with one row and one seed", () => {
    const r = report();
    const doc = parseXml(privacyPlaneSvg([r.rows[1]], r.tasks.length, "acc"));
    expect(byClass(doc, "point")).toHaveLength(1);
  });
});

/**
 * Runs of two methods over ratios: gradot at 0.3, 0.5, 0.7 (2 seeds) and layerdrop at 0.5, 0.3 (1 seed),
 * one task; plug-in, emulator ZS and emulator perplexity rise with the ratio; Full ZS 40, Full FT 70 (gradot only).
 */
function frontierReport(fullFt = true): Report {
  const result = (method: string, ratio: number, seed: number, plugIn: number, emuZs: number, ppl: number): RunResult => ({
    formatVersion: 1, model: "m", method, label: `${method}-r${ratio}`, seed, settings: { ratio }, emulator_params: 5,
    middle_params: 10, metric: "acc",
    tasks: { t: { n: 10, full_zs: 40, emulator_zs: emuZs, full_ft: method === "gradot" && fullFt ? 70 : null, emulator_ft: 60, plug_in: plugIn } },
    ppl: { full: 20, emulator: ppl, plug_in: null },
  });
  const results = [
    result("gradot", 0.3, 0, 50, 30, 90), result("gradot", 0.3, 1, 52, 30, 90),
    result("gradot", 0.5, 0, 56, 34, 60), result("gradot", 0.5, 1, 58, 34, 60),
    result("gradot", 0.7, 0, 62, 38, 35), result("gradot", 0.7, 1, 62, 38, 35),
    result("layerdrop", 0.5, 0, 54, 33, 80), result("layerdrop", 0.3, 0, 45, 28, 140),
  ];
  return aggregateRuns(results.map((r) => ({ path: `${r.label}/${r.seed}`, result: r })));
}

/** The numeric tick labels of an axis group. */
const tickValues = (axis: XmlNode) => findAll(axis, (n) => n.name === "text").map((t) => Number(t.text)).filter(Number.isFinite);

describe("privacy–utility frontier", () => {
  it("groups rows into lines by label stem, each by ratio", () => {
    const lines = frontierLines(frontierReport().rows);
    expect(lines.map((l) => [l.name, l.rows.map((r) => r.ratio)])).toEqual([["gradot", [0.3, 0.5, 0.7]], ["layerdrop", [0.3, 0.5]]]);
  });

  it("draws, in each panel, one line per method through one point per ratio, with the reference lines", () => {
    const r = frontierReport();
    const doc = parseXml(frontierSvg(r.rows, r.tasks.length, "acc"));
    const panels = byClass(doc, "panel");
    expect(panels.map((p) => p.attributes["data-x"])).toEqual(["emulator_zs", "emulator_ppl"]);
    const xOf: Record<string, (label: string) => number> = {
      emulator_zs: (label) => r.rows.find((row) => row.label === label)!.emulator_zs,
      emulator_ppl: (label) => r.rows.find((row) => row.label === label)!.ppl.emulator,
    };
    for (const panel of panels) {
      const polylines = byClass(panel, "line");
      expect(polylines.map((l) => l.attributes["data-line"])).toEqual(["gradot", "layerdrop"]);
      for (const line of polylines) {
        const name = line.attributes["data-line"];
        const points = byClass(panel, "point").filter((p) => p.attributes["data-line"] === name);
        expect(points.map((p) => p.attributes["data-ratio"])).toEqual(name === "gradot" ? ["0.3", "0.5", "0.7"] : ["0.3", "0.5"]);
        // the polyline passes through its points, in ratio order
        expect(line.attributes.points).toBe(points.map((p) => `${p.attributes.cx},${p.attributes.cy}`).join(" "));
      }
      // each point is labelled with its ratio
      expect(byClass(panel, "point-label").map((t) => t.text)).toEqual(["0.3", "0.5", "0.7", "0.3", "0.5"]);
      const refs = byClass(panel, "reference").map((g) => g.attributes["data-ref"]);
      expect(refs).toEqual(["full-zs", "full-ft", "full-model"]);
      // the axes' ticks span the data: every x (and the full model's) and every plug-in ± std and reference
      const xTicks = tickValues(byClass(panel, "x-axis")[0]);
      const yTicks = tickValues(byClass(panel, "y-axis")[0]);
      const key = panel.attributes["data-x"];
      const xs = [...r.rows.map((row) => xOf[key](row.label)), key === "emulator_zs" ? 40 : 20];
      expect(Math.min(...xTicks)).toBeLessThanOrEqual(Math.min(...xs));
      expect(Math.max(...xTicks)).toBeGreaterThanOrEqual(Math.max(...xs));
      const ys = [...r.rows.flatMap((row) => [row.plug_in - (row.std.plug_in ?? 0), row.plug_in + (row.std.plug_in ?? 0)]), 40, 70];
      expect(Math.min(...yTicks)).toBeLessThanOrEqual(Math.min(...ys));
      expect(Math.max(...yTicks)).toBeGreaterThanOrEqual(Math.max(...ys));
    }
    // higher emulator ZS, higher plug-in: along gradot's line in the ZS panel, x and y (up = smaller cy) both grow
    const gradot = byClass(panels[0], "point").filter((p) => p.attributes["data-line"] === "gradot");
    for (let k = 1; k < gradot.length; k++) {
      expect(num(gradot[k], "cx")).toBeGreaterThan(num(gradot[k - 1], "cx"));
      expect(num(gradot[k], "cy")).toBeLessThan(num(gradot[k - 1], "cy"));
    }
  });

  it("leaves Full FT out when no row ran it", () => {
    const r = frontierReport(false);
    const doc = parseXml(frontierSvg(r.rows, r.tasks.length, "acc"));
    expect(byClass(doc, "reference").map((g) => g.attributes["data-ref"])).toEqual(["full-zs", "full-model", "full-zs", "full-model"]);
  });
});
