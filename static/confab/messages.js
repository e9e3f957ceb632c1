// The message list: replies grow as deltas arrive, rendered as markdown in the browser
// (markdown.js, sanitised) at most once a frame, and are swapped for the server's rendering,
// which looks the same, when they finish.
//
// Each streaming reply has a `seq`: the number of the last frame shown. A snapshot sets
// the text and its seq; a delta is applied only if it is the next one, so a resumed
// reply is never doubled, and a gap (a lost frame) asks for a fresh snapshot.

import { renderJson, renderMarkdown, renderMath } from "./markdown.js";

export class MessageList {
  constructor(container, labels, { onGap, jump }) {
    this.container = container;
    this.labels = labels;
    this.onGap = onGap;
    this.seqs = new Map(); // message id -> last frame shown; absent: not live yet
    this.texts = new Map(); // streaming reply id -> its text so far
    this.unrendered = new Set(); // replies whose text changed since the last frame
    this.frame = null; // the animation frame that renders them, once asked for
    // The view follows new text only while the reader is at the bottom: scrolling up stops
    // it, and "Jump to latest" (or scrolling back down) starts it again.
    this.jump = jump;
    this.following = true;
    container.addEventListener("scroll", () => this.scrolled(), { passive: true });
    jump?.addEventListener("click", () => {
      this.following = true;
      this.scroll();
    });
    if (!location.hash) container.scrollTop = container.scrollHeight; // the latest first
    renderMath(container);
    // A reply generating when the page loaded: its checkpoint, as markdown until the
    // runner's snapshot takes over.
    for (const article of container.querySelectorAll('.role-assistant[data-status="streaming"]')) {
      this.setText(article.dataset.id, article.querySelector(".message-body").textContent);
    }
  }

  element(id) {
    return document.getElementById(`m-${id}`);
  }

  streamingIds() {
    return [...this.container.querySelectorAll('[data-status="streaming"]')].map((el) => el.dataset.id);
  }

  add(message) {
    if (message.role === "tool") {
      this.show(message); // a tool's stage comes rendered by the server
      return;
    }
    if (this.element(message.id)) return;
    document.getElementById("welcome")?.remove();
    if (message.role === "assistant") {
      // A new reply to the same message (Retry) takes the place of the finished one.
      const selector = `article.role-assistant[data-parent="${message.parent}"]:not([data-status="streaming"])`;
      for (const sibling of this.container.querySelectorAll(selector)) sibling.remove();
    } else {
      // An edited message starts a new branch: the old one leaves the view from there on.
      const old = this.container.querySelector(`article.role-user[data-parent="${message.parent ?? ""}"]`);
      while (old?.nextElementSibling) old.nextElementSibling.remove();
      old?.remove();
    }
    if (message.html) {
      // The server's rendering (an edited message, with its `< 2 / 2 >` switcher).
      const template = document.createElement("template");
      template.innerHTML = message.html; // rendered and escaped by the server
      this.container.append(template.content.firstElementChild);
      this.scroll();
      return;
    }
    const article = document.createElement("article");
    article.className = `message role-${message.role}`;
    article.id = `m-${message.id}`;
    article.dataset.id = message.id;
    article.dataset.parent = message.parent ?? "";
    article.dataset.status = message.status;
    article.dataset.created = message.created;
    const format = message.params?.response_format?.type;
    if (format === "json_object" || format === "json_schema") article.dataset.format = "json";
    const role = document.createElement("div");
    role.className = "message-role";
    role.textContent = message.role === "user" ? this.labels.you : message.model_label || "";
    const body = document.createElement("div");
    body.className = "message-body plain";
    body.textContent = message.content;
    article.append(role, body);
    if (message.files?.length) article.append(attachments(message.files, this.labels));
    if (message.citations?.length) article.append(citations(message, this.labels));
    if (message.role === "assistant") this.setText(message.id, message.content);
    if (message.role === "user") {
      // The same actions as the server's rendering of a user message.
      const meta = document.createElement("footer");
      meta.className = "message-meta message-actions";
      for (const action of ["copy", "edit", "delete"]) {
        const button = document.createElement("button");
        button.type = "button";
        button.className = action === "edit" ? "link edit" : "link";
        button.dataset[action] = message.id;
        button.textContent = this.labels[action];
        meta.append(button);
      }
      article.append(meta);
    }
    if (message.status === "streaming") {
      const meta = document.createElement("footer");
      meta.className = "message-meta";
      const status = document.createElement("span");
      status.className = "status-streaming";
      status.textContent = this.labels.streaming;
      meta.append(status);
      article.append(meta);
      this.seqs.set(message.id, 0); // a new reply: its frames start at 1
    }
    this.container.append(article);
    this.scroll();
  }

  // A message as the server renders it (a tool's stage: created, approved, ended), in
  // its place, or at the end when new.
  show(message) {
    const template = document.createElement("template");
    template.innerHTML = message.html; // rendered and sanitised by the server
    const rendered = template.content.firstElementChild;
    const article = this.element(message.id);
    if (article) article.replaceWith(rendered);
    else this.container.append(rendered);
    this.scroll();
  }

  // From the runner (live: deltas follow) or from a checkpoint (wait for the runner's).
  snapshot(message, seq, fromCheckpoint) {
    this.add(message);
    if (message.role === "tool") return; // no frames: what it shows is all there is
    const article = this.element(message.id);
    if (article.dataset.status !== "streaming") return;
    const shown = this.seqs.get(message.id);
    if (fromCheckpoint ? shown > 0 : seq < (shown ?? -1)) return;
    this.setText(message.id, message.content);
    if (message.reasoning) this.reasoning(article).textContent = message.reasoning;
    this.toolCalls(article, message.tool_calls);
    if (fromCheckpoint) this.seqs.delete(message.id);
    else this.seqs.set(message.id, seq);
  }

  delta(frame) {
    const article = this.element(frame.message);
    const shown = this.seqs.get(frame.message);
    if (!article || shown === undefined || frame.seq <= shown) return;
    if (frame.seq > shown + 1) {
      this.seqs.delete(frame.message); // a frame went missing: start again from a snapshot
      this.onGap(frame.message);
      return;
    }
    this.seqs.set(frame.message, frame.seq);
    if (frame.reasoning) this.reasoning(article).append(frame.reasoning);
    if (frame.content) this.setText(frame.message, this.texts.get(frame.message) + frame.content);
    if (frame.tool_calls) this.toolCalls(article, frame.tool_calls);
    this.scroll();
  }

  done(message) {
    const article = this.element(message.id);
    const template = document.createElement("template");
    template.innerHTML = message.html; // rendered and sanitised by the server
    const rendered = template.content.firstElementChild;
    // With n > 1 the first alternative stays on show, as after a reload; the others are
    // one click away in its `< 1 / 2 >` switcher.
    const shownSibling = this.container.querySelector(
      `article.role-assistant[data-parent="${message.parent}"]:not(#m-${message.id})`,
    );
    if (shownSibling && message.created > shownSibling.dataset.created) article?.remove();
    else if (article) article.replaceWith(rendered);
    else this.container.append(rendered);
    this.addCopyButtons(rendered);
    renderMath(rendered);
    this.seqs.delete(message.id);
    this.texts.delete(message.id);
    this.unrendered.delete(message.id);
    this.scroll();
  }

  // Messages deleted in another tab: true when this page showed any of them.
  remove(ids) {
    let removed = false;
    for (const id of ids) {
      const article = this.element(id);
      if (!article) continue;
      article.remove();
      this.seqs.delete(id);
      this.texts.delete(id);
      this.unrendered.delete(id);
      removed = true;
    }
    return removed;
  }

  // The thread again, as the server renders it now (after a deletion elsewhere: the
  // version now shown, the switchers' counts).
  replaceAll(html) {
    const template = document.createElement("template");
    template.innerHTML = html; // rendered and sanitised by the server
    this.container.replaceChildren(template.content);
    this.seqs.clear();
    this.texts.clear();
    this.unrendered.clear();
    renderMath(this.container);
    this.addCopyButtons(this.container);
    for (const id of this.streamingIds()) {
      this.setText(id, this.element(id).querySelector(".message-body").textContent);
    }
  }

  // A reply's text is the model; its body shows it as markdown, rendered once per frame
  // however many deltas arrive, like the server's HTML it is swapped for at the end.
  setText(id, text) {
    this.texts.set(id, text);
    this.unrendered.add(id);
    this.frame ??= requestAnimationFrame(() => {
      this.frame = null;
      for (const id of this.unrendered) {
        const body = this.element(id)?.querySelector(".message-body");
        body?.classList.replace("plain", "markdown");
        const render = body?.closest("article").dataset.format === "json" ? renderJson : renderMarkdown;
        if (body) keepWhatIsUnchanged(body, render(this.texts.get(id)));
      }
      this.unrendered.clear();
      this.scroll();
    });
  }

  // A copy button on every code block of finished replies.
  addCopyButtons(root) {
    for (const pre of root.querySelectorAll(".markdown pre")) {
      if (pre.querySelector(".copy-code")) continue;
      const button = document.createElement("button");
      button.type = "button";
      button.className = "copy-code";
      button.textContent = this.labels.copy;
      button.addEventListener("click", async () => {
        const code = pre.querySelector("code")?.textContent ?? "";
        let label = this.labels.copied;
        try {
          await navigator.clipboard.writeText(code.replace(/\n$/, "")); // markdown adds one
        } catch {
          label = this.labels.copyFailed; // the browser refused: say so, never silently
        }
        button.textContent = label;
        setTimeout(() => (button.textContent = this.labels.copy), 1500);
      });
      pre.append(button);
    }
  }

  // The reasoning block, open while the model thinks; the server's version comes closed.
  reasoning(article) {
    let box = article.querySelector(".message-reasoning");
    if (!box) {
      const details = document.createElement("details");
      details.className = "reasoning";
      details.open = true;
      const summary = document.createElement("summary");
      summary.textContent = this.labels.reasoning;
      box = document.createElement("div");
      box.className = "message-reasoning plain";
      details.append(summary, box);
      article.querySelector(".message-body").before(details);
    }
    return box;
  }

  toolCalls(article, calls) {
    for (const old of article.querySelectorAll(".tool-call")) old.remove();
    let anchor = article.querySelector(".message-body");
    for (const call of calls || []) {
      const block = document.createElement("div");
      block.className = "tool-call";
      const name = document.createElement("div");
      name.className = "tool-call-name";
      name.textContent = this.labels.toolCall.replace("%s", call.function?.name || "?");
      const code = document.createElement("pre");
      code.textContent = call.function?.arguments || "";
      block.append(name, code);
      anchor.after(block);
      anchor = block;
    }
  }

  scroll() {
    if (this.following) this.container.scrollTop = this.container.scrollHeight;
    this.showJump();
  }

  // A scroll by the reader (or by scroll() itself, which lands at the bottom).
  scrolled() {
    const { scrollHeight, scrollTop, clientHeight } = this.container;
    this.following = scrollHeight - scrollTop - clientHeight < 40;
    this.showJump();
  }

  showJump() {
    if (this.jump) this.jump.hidden = this.following;
  }
}

// A user message's files, as the server renders them (chat.html#message): names only.
function attachments(files, labels) {
  const list = document.createElement("ul");
  list.className = "attachments";
  list.setAttribute("aria-label", labels.files);
  for (const file of files) {
    const item = document.createElement("li");
    item.className = "attachment";
    item.textContent = file.name;
    list.append(item);
  }
  return list;
}

// A reply's sources while it streams, as the server renders them (chat.html#citations):
// each passage's file and page; a click shows the passage. Text only: files are untrusted.
function citations(message, labels) {
  const box = document.createElement("details");
  box.className = "citations";
  const summary = document.createElement("summary");
  summary.textContent = (message.citations.length === 1 ? labels.oneSource : labels.sources)
    .replace("%s", message.citations.length);
  const list = document.createElement("ol");
  list.className = "citation-list";
  for (const cited of message.citations) {
    const item = document.createElement("li");
    item.className = "citation";
    item.id = `cite-${message.id}-${cited.n}`;
    const passage = document.createElement("details");
    const label = document.createElement("summary");
    label.textContent = `[${cited.n}] ${cited.name}` + (cited.page ? `, ${labels.page.replace("%s", cited.page)}` : "");
    const quote = document.createElement("blockquote");
    quote.className = "passage";
    quote.textContent = cited.text;
    passage.append(label, quote);
    item.append(passage);
    list.append(item);
  }
  box.append(summary, list);
  return box;
}

// A reply's body re-rendered with its new text: the blocks that did not change are kept as
// they are, so a selection in text already written survives every frame (and the browser
// lays out only what changed). Markdown rarely changes anything but the last blocks.
function keepWhatIsUnchanged(body, fragment) {
  const old = [...body.childNodes];
  const fresh = [...fragment.childNodes];
  let same = 0;
  while (same < old.length && same < fresh.length && old[same].isEqualNode(fresh[same])) same++;
  for (const node of old.slice(same)) node.remove();
  body.append(...fresh.slice(same));
}
