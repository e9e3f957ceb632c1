// The chat page: wires the socket, the message list and the composer together.

import { wireMessageActions } from "./actions.js";
import { MessageList } from "./messages.js";
import { wirePicker } from "./picker.js";
import { ChatSocket } from "./socket.js";
import { Uploads } from "./uploads.js";

const page = JSON.parse(document.getElementById("page-data").textContent);
const text = JSON.parse(document.getElementById("ui-text").textContent);
const form = document.getElementById("composer");
const input = document.getElementById("composer-input");
const picker = document.getElementById("model-picker");
const stopButton = document.getElementById("stop-button");
const sendButton = document.getElementById("send-button");
const waitNote = document.getElementById("composer-wait");
const queueNote = document.getElementById("composer-queue");
const errorBox = document.getElementById("composer-error");
const editNote = document.getElementById("composer-note");
const connection = document.getElementById("connection");
const announcer = document.getElementById("announcer");
const uploads = new Uploads({
  form,
  list: document.getElementById("composer-files"),
  input: document.getElementById("attach-input"),
  status: document.getElementById("file-status"),
  text,
  uploadUrl: page.uploadUrl,
});
const offer = wirePicker({ url: page.modelsUrl, text });
const list = new MessageList(document.getElementById("messages"), text, {
  onGap: () => subscribe(),
  jump: document.getElementById("jump-latest"),
});
let conversation = page.conversation;
// The message the next send answers: null, the end of the remembered branch, unless the page
// shows another one (?show=, which remembers nothing) until a send continues it.
let parent = page.parent;
let editing = null; // the user message being edited, if any
const pending = new Map(); // client_id -> the send event, until the server confirms it
// Messages written while a reply streams (a send then would be refused as busy): sent one
// at a time, each when the replies before it have ended.
const queued = [];
let reconnected = false; // the socket opened before: this page may have missed events

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// Between a step's last result and the model's next reply (a moment: docs/protocol.md,
// Tools) the turn goes on though nothing streams; a message queued meanwhile waits for it.
let nextStep = null; // the timer that gives up waiting, should no reply come

function streaming() {
  return list.streamingIds().length > 0 || nextStep !== null;
}

// Said to screen readers: what just happened, and, until it is answered, that a call
// waits for the user's approval (later news must not drown it).
function announce(news) {
  const waiting = document.querySelector('article.role-tool[data-approval="pending"][data-status="streaming"]');
  const name = waiting?.querySelector(".tool-name").textContent;
  announcer.textContent = [news, name && text.toolWaits.replace("%s", name)].filter(Boolean).join(" ");
}

function awaitNextStep(message) {
  const last = document.querySelector("#messages article.message:last-of-type");
  if (message.role !== "tool" || message.status !== "complete" || last?.dataset.id !== message.id) return;
  clearTimeout(nextStep);
  nextStep = setTimeout(() => {
    nextStep = null;
    sendQueued();
  }, 10_000);
}

// While a reply streams the send button queues, and says why once there is text to send.
function refreshControls() {
  const busy = streaming();
  stopButton.hidden = !busy;
  form.classList.toggle("is-streaming", busy);
  sendButton.textContent = busy ? text.queue : text.send;
  waitNote.hidden = !(busy && input.value.trim());
  queueNote.hidden = queued.length === 0;
  document.getElementById("composer-queue-text").textContent =
    queued.length > 1 ? text.queuedMany.replace("%s", queued.length) : text.queuedOne;
}

// Called when a reply ends: the next queued message goes if nothing else is on its way.
function sendQueued() {
  if (queued.length && !streaming() && pending.size === 0) sendNow(queued.shift());
  refreshControls();
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function sidebarLink(id) {
  return document.querySelector(`#conversation-list a[data-id="${id}"]`);
}

function showInSidebar(item, { current = false } = {}) {
  const sidebar = document.getElementById("conversation-list");
  sidebar.querySelector(".empty")?.remove();
  let link = sidebarLink(item.id);
  if (link && item.pinned !== undefined && item.pinned !== (link.dataset.pinned === "true")) {
    link.parentElement.remove(); // pinned or unpinned: it moves, as a reload would show
    link = null;
  }
  if (!link) {
    const li = document.createElement("li");
    link = document.createElement("a");
    link.href = page.conversationUrl.replace("{id}", item.id);
    link.dataset.id = item.id;
    li.append(link);
    (item.pinned ? dayHeading(sidebar, "pinned", text.pinned) : todayHeading(sidebar)).after(li);
  }
  if (item.pinned !== undefined) link.dataset.pinned = String(item.pinned);
  link.textContent = item.title || text.newChat;
  if (item.generating !== undefined) link.classList.toggle("generating", item.generating);
  if (current) {
    sidebar.querySelector('[aria-current="page"]')?.removeAttribute("aria-current");
    link.setAttribute("aria-current", "page");
  }
}

// New conversations go first under "Today", after the pinned ones; each heading is made
// when the list has none yet.
function todayHeading(sidebar) {
  return dayHeading(sidebar, "today", text.today);
}

function dayHeading(sidebar, day, label) {
  let heading = sidebar.querySelector(`li.day[data-day="${day}"]`);
  if (!heading) {
    heading = document.createElement("li");
    heading.className = "day";
    heading.dataset.day = day;
    heading.textContent = label;
    const pinned = sidebar.querySelector('li.day[data-day="pinned"]');
    if (day === "pinned" || !pinned) {
      sidebar.prepend(heading);
    } else {
      // after the last pinned conversation
      let last = pinned;
      while (last.nextElementSibling && !last.nextElementSibling.matches("li.day")) {
        last = last.nextElementSibling;
      }
      last.after(heading);
    }
  }
  return heading;
}

// The header of the conversation on show: its title and what its menu offers, as a reload
// would show them.
function showHeader(item) {
  document.getElementById("conversation-title").textContent = item.title || text.newChat;
  document.title = `${item.title || text.newChat} · Confab`;
  const rename = document.getElementById("rename-title");
  if (rename && document.activeElement !== rename) rename.value = item.title;
  const labels = { pinned: [text.pin, text.unpin], archived: [text.archive, text.unarchive] };
  for (const [flag, [off, on]] of Object.entries(labels)) {
    const button = document.querySelector(`#conversation-controls [data-flag="${flag}"]`);
    if (button && item[flag] !== undefined) button.textContent = item[flag] ? on : off;
  }
}

// A conversation started on this page: its header controls (manage, settings, exports),
// from the page's template, made for its id.
function addControls(id) {
  const template = document.getElementById("controls-template");
  if (!template) return;
  const controls = template.content.firstElementChild.cloneNode(true);
  for (const element of [controls, ...controls.querySelectorAll("*")]) {
    for (const name of ["action", "href"]) {
      const value = element.getAttribute(name);
      if (value?.includes(page.placeholder)) {
        element.setAttribute(name, value.replace(page.placeholder, id));
      }
    }
  }
  template.replaceWith(controls);
}

function subscribe() {
  if (!conversation) return;
  // The replies this page shows as streaming: the server ends any that ended meanwhile.
  // The server takes up to 32 ids (docs/protocol.md): more than a page ever shows.
  socket.send({ type: "subscribe", conversation, streaming: list.streamingIds().slice(0, 32) });
}

const handlers = {
  "conversation.created"(event) {
    const ours = event.client_id && pending.has(event.client_id);
    if (ours) {
      conversation = event.conversation.id;
      history.replaceState(null, "", page.conversationUrl.replace("{id}", conversation));
      addControls(conversation);
      showHeader(event.conversation);
    }
    showInSidebar(event.conversation, { current: ours });
  },
  "conversation.updated"(event) {
    if (event.conversation.deleted || event.conversation.archived) {
      sidebarLink(event.conversation.id)?.parentElement.remove();
    } else {
      showInSidebar(event.conversation);
    }
    if (event.conversation.id === conversation) showHeader(event.conversation);
  },
  "file.updated"(event) {
    uploads.update(event.file);
  },
  "message.created"(event) {
    if (event.client_id && pending.delete(event.client_id)) parent = null; // now remembered
    if (event.message.conversation !== conversation) return;
    clearTimeout(nextStep);
    nextStep = null;
    list.add(event.message);
    refreshControls();
    if (event.message.approval === "pending") announce("");
  },
  "message.snapshot"(event) {
    list.snapshot(event.message, event.seq, event.checkpoint === true);
    refreshControls();
  },
  "message.delta"(event) {
    list.delta(event);
  },
  "message.updated"(event) {
    if (event.message.conversation !== conversation) return;
    list.show(event.message); // a call approved: it runs now
    refreshControls();
  },
  "message.done"(event) {
    list.done(event.message);
    if (event.message.conversation === conversation) awaitNextStep(event.message);
    sendQueued();
    const tool = event.message.role === "tool";
    announce(tool ? text.toolFinished.replace("%s", event.message.name) : text.replyFinished);
  },
  "message.deleted"(event) {
    if (event.conversation !== conversation) return;
    if (editing && event.messages.includes(editing)) {
      setEditing(null);
      input.value = "";
    }
    if (list.remove(event.messages)) refreshThread();
  },
  "models.changed"() {
    offer.refresh();
  },
  error(event) {
    const sent = event.client_id && pending.get(event.client_id);
    if (sent) {
      if (!input.value) input.value = sent.content;
      pending.delete(event.client_id);
    }
    showError(event.message);
  },
};

// After a deletion (in this tab or another), the thread as the server now shows it: the
// remembered branch, so a send continues it (parent null).
async function refreshThread() {
  const url = new URL(page.conversationUrl.replace("{id}", conversation), location.href);
  url.searchParams.set("thread", "1");
  if (new URLSearchParams(location.search).get("earlier") === "all") {
    url.searchParams.set("earlier", "all");
  }
  const response = await fetch(url).catch(() => null);
  if (!response?.ok || response.redirected) return; // gone or signed out: the removal stands
  list.replaceAll(await response.text());
  parent = null;
  refreshControls();
  if (list.streamingIds().length) subscribe(); // their snapshots, to stream on
}

const socket = new ChatSocket(page.socket, {
  onEvent: (event) => handlers[event.type]?.(event),
  onOpen: () => {
    subscribe();
    if (reconnected) offer.refresh(); // what changed while the socket was down
    reconnected = true;
    // Sends the server may not have had: retried with the same client_id, never doubled.
    for (const event of pending.values()) socket.send(event);
    if (errorBox.textContent === text.sendQueued) showError(""); // sent now
  },
  onStatus: (status) => {
    document.body.dataset.connection = status; // "open", "reconnecting" or "signed-out"
    connection.hidden = status === "open";
    connection.textContent = status === "signed-out" ? text.signedOut : text.reconnecting;
  },
});

// Notices go away after a while, or when clicked; one that offers Undo stays.
const notices = document.getElementById("notices");
if (!notices.querySelector(".undo-form")) {
  const clear = () => notices.replaceChildren();
  notices.addEventListener("click", clear);
  setTimeout(clear, 8000);
}

// A phone's sidebar: a drawer behind the Menu button.
const menu = document.getElementById("menu-button");
const backdrop = document.getElementById("sidebar-backdrop");
function setDrawer(open) {
  document.body.classList.toggle("sidebar-open", open);
  menu.setAttribute("aria-expanded", String(open));
  backdrop.hidden = !open;
  if (open) document.getElementById("sidebar").querySelector("a, input")?.focus();
}
menu.addEventListener("click", () => setDrawer(!document.body.classList.contains("sidebar-open")));
backdrop.addEventListener("click", () => setDrawer(false));

// The conversation opens at its latest message (a link to a message, at that one), and
// stays there while the view's size changes: a phone's keyboard opening, a notice going.
const messagesView = document.getElementById("messages");
let atBottom = !location.hash;
messagesView.addEventListener("scroll", () => {
  const below = messagesView.scrollHeight - messagesView.scrollTop - messagesView.clientHeight;
  atBottom = below < 120;
});
new ResizeObserver(() => {
  if (atBottom) messagesView.scrollTop = messagesView.scrollHeight;
}).observe(messagesView);
window.addEventListener("load", () => {
  if (atBottom) messagesView.scrollTop = messagesView.scrollHeight; // fonts and math laid out
});

// Forms that ask first (deleting a conversation), those added later included.
document.addEventListener("submit", (event) => {
  const confirmed = event.target.closest("form[data-confirm]");
  if (confirmed && !window.confirm(confirmed.dataset.confirm)) event.preventDefault();
});

// A handle for debugging from the console and for the browser tests (dropping the socket).
window.confab = { socket };

function send() {
  const content = input.value;
  if (!content.trim()) return;
  const files = uploads.ready();
  if (files === null) {
    showError(text.filesNotReady); // a file is still being read: sent once it is
    return;
  }
  if (editing) {
    dispatch({ type: "edit", message: editing, content, client_id: uuid() });
    setEditing(null);
  } else if (streaming()) {
    queued.push({ content, model: picker.value || null, files });
  } else {
    sendNow({ content, model: picker.value || null, files });
  }
  uploads.clear();
  input.value = "";
  resize();
  refreshControls();
  input.focus();
}

function sendNow({ content, model, files = [] }) {
  const event = { type: "send", conversation, content, parent, model, params: {}, client_id: uuid() };
  if (files.length) event.files = files;
  if (!conversation && page.project) event.project = page.project; // a new chat in a project
  dispatch(event);
}

function dispatch(event) {
  pending.set(event.client_id, event);
  // Unsent, it stays pending: the socket sends it again once it is back (onOpen).
  showError(socket.send(event) ? "" : text.sendQueued);
}

// Cancelling the queue puts what it held back in the composer.
document.getElementById("composer-queue-cancel").addEventListener("click", () => {
  input.value = [...queued.splice(0).map((message) => message.content), input.value]
    .filter((content) => content.trim())
    .join("\n\n");
  resize();
  refreshControls();
  input.focus();
});

function resize() {
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});
input.addEventListener("keydown", (event) => {
  // isComposing: Enter confirms a candidate in Chinese and Japanese input methods.
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    send();
  }
});
input.addEventListener("input", () => {
  resize();
  waitNote.hidden = !(streaming() && input.value.trim());
});
function stop() {
  for (const id of list.streamingIds()) {
    if (!socket.send({ type: "stop", message: id })) showError(text.notConnected);
  }
}

stopButton.addEventListener("click", stop);
function setEditing(messageId) {
  editing = messageId;
  editNote.hidden = !messageId;
}

// The hint under the composer opens the list that `?` opens.
document.getElementById("shortcuts-hint").addEventListener("click", () => {
  document.getElementById("shortcuts").showModal();
});

document.addEventListener("keydown", (event) => {
  const typing = event.target.closest("input, textarea, select, [contenteditable]");
  if (!typing && event.key === "?") {
    event.preventDefault();
    document.getElementById("shortcuts").showModal();
    return;
  }
  if (!typing && event.key === "/") {
    event.preventDefault();
    input.focus();
    return;
  }
  if (event.key !== "Escape") return;
  if (document.body.classList.contains("sidebar-open")) {
    setDrawer(false);
    menu.focus();
  } else if (editing) {
    setEditing(null);
    input.value = "";
  } else if (list.streamingIds().length) {
    event.preventDefault();
    stop();
  }
});
list.addCopyButtons(document.getElementById("messages"));
wireMessageActions({ container: document.getElementById("messages"), socket, text, page, showError });
document.getElementById("messages").addEventListener("click", (event) => {
  const edit = event.target.closest("[data-edit]");
  if (edit) {
    setEditing(edit.dataset.edit);
    input.value = list.element(edit.dataset.edit).querySelector(".message-body").textContent;
    resize();
    input.focus();
  }
});
refreshControls();
input.focus();
