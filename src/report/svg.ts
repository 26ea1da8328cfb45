/**
 * A small SVG writer: elements as plain data, rendered to well-formed XML with
 * escaped text and attributes and numbers rounded to 0.01 px. The report's
 * charts are built on it so that they need no plotting dependency.
 *
 * @module
 */

/** Attribute values; `undefined` leaves the attribute out. */
export type SvgAttributes = Record<string, string | number | undefined>;

/** An element: name, attributes and children (elements or text). */
export interface SvgElement {
  name: string;
  attributes: SvgAttributes;
  children: (SvgElement | string)[];
}

/** Builds an element; text children are escaped when rendered. */
export function el(name: string, attributes: SvgAttributes = {}, ...children: (SvgElement | string)[]): SvgElement {
  return { name, attributes, children };
}

/** Escapes `&`, `<`, `>`, `"` and `'` for text and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * A coordinate or length as SVG text, rounded to 2 decimals.
 * @throws Error for NaN or ±Infinity (a chart computed from bad input)
 */
export function svgNumber(value: number): string {
  if (!Number.isFinite(value)) throw new Error(`Cannot write ${value} as an SVG number`);
  const rounded = Math.round(value * 100) / 100;
  return String(Object.is(rounded, -0) ? 0 : rounded);
}

const NAME = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;

function render(node: SvgElement | string, indent: string, out: string[]): void {
  if (typeof node === "string") {
    out.push(indent + escapeXml(node));
    return;
  }
  if (!NAME.test(node.name)) throw new Error(`Cannot write SVG element named ${JSON.stringify(node.name)}`);
  let open = `<${node.name}`;
  for (const [key, value] of Object.entries(node.attributes)) {
    if (value === undefined) continue;
    if (!NAME.test(key)) throw new Error(`Cannot write SVG attribute named ${JSON.stringify(key)}`);
    open += ` ${key}="${typeof value === "number" ? svgNumber(value) : escapeXml(value)}"`;
  }
  if (node.children.length === 0) {
    out.push(`${indent}${open}/>`);
  } else if (node.children.every((c) => typeof c === "string")) {
    out.push(`${indent}${open}>${(node.children as string[]).map(escapeXml).join("")}</${node.name}>`);
  } else {
    out.push(`${indent}${open}>`);
    for (const child of node.children) render(child, indent + "  ", out);
    out.push(`${indent}</${node.name}>`);
  }
}

/**
 * Renders a standalone SVG document of `width` × `height` px holding
 * `children`, with the XML declaration, the SVG namespace and a white
 * background (so it reads on dark viewers too).
 */
export function svgDocument(width: number, height: number, children: SvgElement[]): string {
  const root = el(
    "svg",
    {
      xmlns: "http://www.w3.org/2000/svg",
      width,
      height,
      viewBox: `0 0 ${svgNumber(width)} ${svgNumber(height)}`,
      "font-family": "Helvetica, Arial, sans-serif",
      "font-size": 12,
    },
    el("rect", { x: 0, y: 0, width, height, fill: "#ffffff" }),
    ...children,
  );
  const out: string[] = ['<?xml version="1.0" encoding="UTF-8"?>'];
  render(root, "", out);
  return out.join("\n") + "\n";
}
