// The message list: replies grow as deltas arrive, as plain text (never innerHTML),
// and are swapped for the server's sanitised rendering when they finish.

export class MessageList {
  constructor(container, { streamingLabel, youLabel }) {
    this.container = container;
    this.streamingLabel = streamingLabel;
    this.youLabel = youLabel;
    this.seqs = new Map();
  }

  element(id) {
    return document.getElementById(`m-${id}`);
  }

  streamingIds() {
    return [...this.container.querySelectorAll('[data-status="streaming"]')].map((el) => el.dataset.id);
  }

  add(message) {
    if (this.element(message.id)) return;
    document.getElementById("welcome")?.remove();
    const article = document.createElement("article");
    article.className = `message role-${message.role}`;
    article.id = `m-${message.id}`;
    article.dataset.id = message.id;
    article.dataset.status = message.status;
    const role = document.createElement("div");
    role.className = "message-role";
    role.textContent = message.role === "user" ? this.youLabel : message.model || "";
    const body = document.createElement("div");
    body.className = "message-body plain";
    body.textContent = message.content;
    article.append(role, body);
    if (message.status === "streaming") {
      const meta = document.createElement("footer");
      meta.className = "message-meta";
      const status = document.createElement("span");
      status.className = "status-streaming";
      status.textContent = this.streamingLabel;
      meta.append(status);
      article.append(meta);
    }
    this.container.append(article);
    this.scroll();
  }

  snapshot(message, seq) {
    this.add(message);
    const known = this.seqs.get(message.id) ?? -1;
    if (seq < known) return;
    this.element(message.id).querySelector(".message-body").textContent = message.content;
    this.seqs.set(message.id, seq);
  }

  delta(frame) {
    const article = this.element(frame.message);
    if (!article || article.dataset.status !== "streaming") return;
    if (frame.seq <= (this.seqs.get(frame.message) ?? -1)) return; // already shown
    this.seqs.set(frame.message, frame.seq);
    if (frame.content) {
      article.querySelector(".message-body").append(frame.content);
      this.scroll();
    }
  }

  done(message) {
    const article = this.element(message.id);
    const template = document.createElement("template");
    template.innerHTML = message.html; // rendered and sanitised by the server
    const rendered = template.content.firstElementChild;
    if (article) article.replaceWith(rendered);
    else this.container.append(rendered);
    this.seqs.delete(message.id);
    this.scroll();
  }

  scroll() {
    const nearBottom =
      this.container.scrollHeight - this.container.scrollTop - this.container.clientHeight < 120;
    if (nearBottom) this.container.scrollTop = this.container.scrollHeight;
  }
}
