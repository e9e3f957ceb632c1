// A reply's markdown, rendered in the browser exactly as the server renders it when the reply
// ends (conversations/rendering.py), so that nothing moves when the server's HTML takes its
// place: markdown-it, the library markdown-it-py ports, with the same options and the same
// math rule; then DOMPurify with nh3's allow-list. Change the two files together.
//
// Math is escaped TeX in <span class="math" data-display="inline|block"> on both sides, and
// renderMath alone turns it into MathML, for the server's HTML and for streaming text alike.
// The libraries are vendored classic scripts (static/vendor/) that chat.html loads first.

const { markdownit, DOMPurify, temml } = globalThis;

const md = markdownit("commonmark", { html: false, linkify: false });
md.enable(["table", "strikethrough"]);

// $…$ and \(…\) inline, $$…$$ and \[…\] displayed: rendering.py's rule, line for line.
const DELIMITERS = [
  ["$$", "$$"],
  ["\\[", "\\]"],
  ["\\(", "\\)"],
  ["$", "$"],
]; // longest opener first
const DISPLAYED = ["$$", "\\["];
const isSpace = (text, index) => md.utils.isWhiteSpace(text.charCodeAt(index));

function mathInline(state, silent) {
  const src = state.src;
  const [opener, closer] = DELIMITERS.find(([o]) => src.startsWith(o, state.pos)) ?? [];
  if (!opener) return false;
  const start = state.pos + opener.length;
  const find = (from) => {
    const index = src.indexOf(closer, from);
    return index !== -1 && index + closer.length <= state.posMax ? index : -1;
  };
  let end = find(start);
  while (end !== -1 && opener[0] === "$" && src[end - 1] === "\\") end = find(end + 1); // \$
  if (end === -1) return false;
  const tex = src.slice(start, end);
  if (!tex.trim()) return false;
  // Pandoc's rule, so that "$5 and $10" stays prose: no space inside the dollars, and no
  // digit straight after the closing one.
  if (
    opener === "$" &&
    (isSpace(tex, 0) || isSpace(tex, tex.length - 1) || /[0-9]/.test(src[end + 1] ?? ""))
  ) {
    return false;
  }
  if (!silent) {
    const token = state.push("math_inline", "math", 0);
    token.content = tex;
    token.markup = opener;
    token.info = DISPLAYED.includes(opener) ? "block" : "inline";
  }
  state.pos = end + closer.length;
  return true;
}

// $$ or \[ opening a line, up to the line that ends with $$ or \], no blank line between.
function mathBlock(state, startLine, endLine, silent) {
  if (state.sCount[startLine] - state.blkIndent >= 4) return false; // indented code
  const begin = state.bMarks[startLine] + state.tShift[startLine];
  const opener = DISPLAYED.find((o) => state.src.startsWith(o, begin));
  if (!opener) return false;
  const closer = DELIMITERS.find(([o]) => o === opener)[1];
  let line = startLine;
  let text = state.src.slice(begin + opener.length, state.eMarks[startLine]);
  const lines = [];
  let end;
  while ((end = text.indexOf(closer)) === -1) {
    lines.push(text);
    line += 1;
    if (line >= endLine || state.isEmpty(line) || state.sCount[line] < state.blkIndent) {
      return false;
    }
    text = state.src.slice(state.bMarks[line] + state.tShift[line], state.eMarks[line]);
  }
  lines.push(text.slice(0, end));
  const tex = lines.join("\n");
  if (text.slice(end + closer.length).trim() || !tex.trim()) return false; // for the inline rule
  if (!silent) {
    const token = state.push("math_block", "math", 0);
    token.block = true;
    token.content = tex;
    token.markup = opener;
    token.map = [startLine, line + 1];
    state.line = line + 1;
  }
  return true;
}

const mathSpan = (tex, display) =>
  `<span class="math" data-display="${display}">${md.utils.escapeHtml(tex.trim())}</span>`;

md.inline.ruler.before("escape", "math_inline", mathInline);
md.block.ruler.before("fence", "math_block", mathBlock, {
  alt: ["paragraph", "reference", "blockquote", "list"],
});
md.renderer.rules.math_inline = (tokens, idx) => mathSpan(tokens[idx].content, tokens[idx].info);
md.renderer.rules.math_block = (tokens, idx) => `${mathSpan(tokens[idx].content, "block")}\n`;

// Table alignment as a class, not the style attribute the page's Content-Security-Policy
// refuses: rendering.py's _alignment_as_class.
md.core.ruler.push("alignment_as_class", (state) => {
  for (const token of state.tokens) {
    const style = (token.type === "th_open" || token.type === "td_open") && token.attrGet("style");
    if (!style) continue;
    token.attrs = token.attrs.filter(([name]) => name !== "style");
    token.attrSet("class", `align-${style.replace("text-align:", "")}`);
  }
});

// nh3's allow-list in rendering.py, tag by tag. No <img>: its URL would be fetched.
const ALLOWED = {
  ...Object.fromEntries(
    "p br hr h1 h2 h3 h4 h5 h6 strong em del s blockquote ul li pre table thead tbody tr"
      .split(" ")
      .map((tag) => [tag, []]),
  ),
  a: ["href", "title"],
  code: ["class"],
  span: ["class", "data-display"],
  ol: ["start"],
  th: ["class"],
  td: ["class"],
};
const MARKDOWN = {
  ALLOWED_TAGS: Object.keys(ALLOWED),
  ALLOWED_ATTR: [...new Set(Object.values(ALLOWED).flat())],
  ALLOWED_URI_REGEXP: /^(?:(?:https?|mailto):|[^a-z]|[a-z+.-]+(?:[^a-z+.\-:]|$))/i,
  ALLOW_DATA_ATTR: false,
  ALLOW_ARIA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};
const markdownPurifier = DOMPurify(window);
markdownPurifier.addHook("uponSanitizeAttribute", (node, data) => {
  const allowed = ALLOWED[node.nodeName.toLowerCase()] ?? [];
  if (!allowed.includes(data.attrName)) data.keepAttr = false;
  else if (/^t[hd]$/i.test(node.nodeName) && !/^align-(left|right|center)$/.test(data.attrValue)) {
    data.keepAttr = false; // nh3's allowed_classes
  }
});
markdownPurifier.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName !== "A") return;
  node.setAttribute("target", "_blank");
  node.setAttribute("rel", "noopener noreferrer");
});

// Temml's MathML, sanitised too: TeX is model output. Its inline styles (colours, padding,
// borders) stay only if they hold no function at all, so no url(): nothing is fetched.
const MATH = {
  USE_PROFILES: { mathMl: true },
  ADD_TAGS: ["span"], // the holder, and Temml's error message
  ADD_ATTR: ["class", "style", "form"],
  FORBID_ATTR: ["href", "xlink:href", "id"],
  IN_PLACE: true,
};
const mathPurifier = DOMPurify(window);
mathPurifier.addHook("uponSanitizeAttribute", (node, data) => {
  if (data.attrName === "style" && !/^[\w\s#%.,:;!-]*$/.test(data.attrValue)) data.keepAttr = false;
});
const mathml = new Map(); // "inline:TeX" -> sanitised MathML, cloned for each use
const rendered = new WeakSet(); // math spans already turned into MathML

// The page's Content-Security-Policy (style-src 'self') refuses style attributes, whether
// parsed from markup or set with setAttribute, but not styles set through CSSOM. So Temml
// builds its MathML with DOM calls (toNode, which sets styles through CSSOM), never as a
// string to parse, and the few styles it keeps as attributes (\pmb, \sideset) move to CSSOM.
function stylesThroughCssom(node) {
  const style = node.attributes?.style;
  if (style) {
    delete node.attributes.style;
    for (const declaration of style.split(";")) {
      const [name, ...value] = declaration.split(":");
      if (name.trim()) node.style[name.trim()] = value.join(":").trim();
    }
  }
  for (const child of node.children ?? []) stylesThroughCssom(child);
}

function toMathML(tex, display) {
  const key = `${display}:${tex}`;
  if (!mathml.has(key)) {
    if (mathml.size > 500) mathml.clear();
    const options = { displayMode: display === "block", trust: false, throwOnError: false };
    try {
      const tree = temml.__renderToMathMLTree(tex, options); // what renderToString serialises
      stylesThroughCssom(tree);
      const holder = document.createElement("span");
      holder.append(tree.toNode());
      mathPurifier.sanitize(holder, MATH);
      const fragment = document.createDocumentFragment();
      fragment.append(...holder.childNodes);
      mathml.set(key, fragment);
    } catch {
      mathml.set(key, null); // Temml still throws on some odd TeX: it stays as text
    }
  }
  return mathml.get(key)?.cloneNode(true);
}

// The TeX in `root` (server HTML or a rendered fragment) as MathML, which Chromium draws
// natively. Without JavaScript the TeX stays readable.
export function renderMath(root) {
  for (const span of root.querySelectorAll("span.math[data-display]")) {
    if (rendered.has(span)) continue;
    const math = toMathML(span.textContent, span.dataset.display);
    if (math) span.replaceChildren(math);
    rendered.add(span);
  }
}

// Model output (untrusted) to a sanitised fragment, math included, as the server would send.
export function renderMarkdown(text) {
  const fragment = markdownPurifier.sanitize(md.render(text), MARKDOWN);
  renderMath(fragment);
  return fragment;
}

// A reply asked for as JSON, as rendering.py's render_json shows it: pretty-printed in a
// code block once it parses; while it streams (and does not parse yet), as written.
export function renderJson(text) {
  if (!text) return renderMarkdown(text);
  let pretty = text;
  try {
    pretty = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    // not complete yet
  }
  return renderMarkdown(`\`\`\`json\n${pretty}\n\`\`\``);
}
