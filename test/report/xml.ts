/**
 * A strict little XML parser for tests: it accepts only well-formed documents
 * (one root, matched tags, quoted unique attributes, valid entity references,
 * no stray `<`), so a test can check the SVG writer's output without trusting
 * the writer, and then query the tree.
 */

/** A parsed element with decoded attribute values and text. */
export interface XmlNode {
  name: string;
  attributes: Record<string, string>;
  children: XmlNode[];
  text: string;
}

const NAME = "[A-Za-z_][A-Za-z0-9_.:-]*";
const ENTITY = /&(?:#[0-9]+|#x[0-9a-fA-F]+|amp|lt|gt|quot|apos);/y;
const NAMED: Record<string, string> = { amp: "&", lt: "<", gt: ">", quot: '"', apos: "'" };

function decode(raw: string, where: number): string {
  let out = "";
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === "<") throw new Error(`Not well-formed at ${where + i}: "<" in text or attribute`);
    if (raw[i] !== "&") {
      out += raw[i];
      continue;
    }
    ENTITY.lastIndex = i;
    const m = ENTITY.exec(raw);
    if (!m) throw new Error(`Not well-formed at ${where + i}: bad entity reference`);
    const body = m[0].slice(1, -1);
    out += body.startsWith("#x")
      ? String.fromCodePoint(parseInt(body.slice(2), 16))
      : body.startsWith("#")
      ? String.fromCodePoint(Number(body.slice(1)))
      : NAMED[body];
    i += m[0].length - 1;
  }
  return out;
}

/** Parses `xml`, throwing `Not well-formed at <offset>: ...` on the first violation. */
export function parseXml(xml: string): XmlNode {
  let pos = 0;
  const decl = /^<\?xml[^?]*\?>/.exec(xml);
  if (decl) pos = decl[0].length;
  const stack: XmlNode[] = [];
  let root: XmlNode | undefined;
  const openTag = new RegExp(`<(${NAME})((?:\\s+${NAME}\\s*=\\s*(?:"[^"]*"|'[^']*'))*)\\s*(/?)>`, "y");
  const closeTag = new RegExp(`</(${NAME})\\s*>`, "y");
  const attribute = new RegExp(`(${NAME})\\s*=\\s*(?:"([^"]*)"|'([^']*)')`, "g");
  while (pos < xml.length) {
    const lt = xml.indexOf("<", pos);
    const text = xml.slice(pos, lt === -1 ? xml.length : lt);
    if (stack.length > 0) stack[stack.length - 1].text += decode(text, pos);
    else if (text.trim() !== "") throw new Error(`Not well-formed at ${pos}: text outside the root element`);
    if (lt === -1) break;
    pos = lt;
    if (xml.startsWith("<!--", pos)) {
      const end = xml.indexOf("-->", pos);
      if (end === -1) throw new Error(`Not well-formed at ${pos}: unclosed comment`);
      pos = end + 3;
      continue;
    }
    closeTag.lastIndex = pos;
    const close = closeTag.exec(xml);
    if (close) {
      const top = stack.pop();
      if (!top || top.name !== close[1]) {
        throw new Error(`Not well-formed at ${pos}: </${close[1]}> closes <${top?.name ?? "nothing"}>`);
      }
      pos = closeTag.lastIndex;
      continue;
    }
    openTag.lastIndex = pos;
    const open = openTag.exec(xml);
    if (!open) throw new Error(`Not well-formed at ${pos}: bad tag`);
    const node: XmlNode = { name: open[1], attributes: {}, children: [], text: "" };
    for (const a of open[2].matchAll(attribute)) {
      if (a[1] in node.attributes) throw new Error(`Not well-formed at ${pos}: duplicate attribute ${a[1]}`);
      node.attributes[a[1]] = decode(a[2] ?? a[3], pos);
    }
    if (stack.length > 0) stack[stack.length - 1].children.push(node);
    else if (root) throw new Error(`Not well-formed at ${pos}: a second root element`);
    else root = node;
    if (open[3] !== "/") stack.push(node);
    pos = openTag.lastIndex;
  }
  if (stack.length > 0) throw new Error(`Not well-formed: <${stack[stack.length - 1].name}> is never closed`);
  if (!root) throw new Error("Not well-formed: no root element");
  return root;
}

/** Every element in the tree (depth first, root included) for which `match` holds. */
export function findAll(node: XmlNode, match: (n: XmlNode) => boolean): XmlNode[] {
  const found = match(node) ? [node] : [];
  for (const child of node.children) found.push(...findAll(child, match));
  return found;
}
