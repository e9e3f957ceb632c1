// The chat page: wires the socket, the message list and the composer together.

import { MessageList } from "./messages.js";
import { ChatSocket } from "./socket.js";

const page = JSON.parse(document.getElementById("page-data").textContent);
const text = JSON.parse(document.getElementById("ui-text").textContent);
const form = document.getElementById("composer");
const input = document.getElementById("composer-input");
const picker = document.getElementById("model-picker");
const stopButton = document.getElementById("stop-button");
const errorBox = document.getElementById("composer-error");
const connection = document.getElementById("connection");
const announcer = document.getElementById("announcer");
const list = new MessageList(document.getElementById("messages"), {
  streamingLabel: text.streaming,
  youLabel: text.you,
  reasoningLabel: text.reasoning,
  toolCallLabel: text.toolCall,
});
let conversation = page.conversation;
const pending = new Map(); // client_id -> text, until the server confirms the send

function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function refreshControls() {
  const streaming = list.streamingIds().length > 0;
  stopButton.hidden = !streaming;
  form.classList.toggle("is-streaming", streaming);
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

function addToSidebar(item) {
  const sidebar = document.getElementById("conversation-list");
  sidebar.querySelector(".empty")?.remove();
  sidebar.querySelector('[aria-current="page"]')?.removeAttribute("aria-current");
  const li = document.createElement("li");
  const link = document.createElement("a");
  link.href = page.conversationUrl.replace("{id}", item.id);
  link.textContent = item.title || text.newChat;
  link.setAttribute("aria-current", "page");
  li.append(link);
  sidebar.prepend(li);
}

const handlers = {
  "conversation.created"(event) {
    conversation = event.conversation.id;
    history.replaceState(null, "", page.conversationUrl.replace("{id}", conversation));
    document.getElementById("conversation-title").textContent = event.conversation.title;
    document.title = `${event.conversation.title} · Confab`;
    addToSidebar(event.conversation);
  },
  "message.created"(event) {
    if (event.client_id) pending.delete(event.client_id);
    list.add(event.message);
    refreshControls();
  },
  "message.snapshot"(event) {
    list.snapshot(event.message, event.seq);
    refreshControls();
  },
  "message.delta"(event) {
    list.delta(event);
  },
  "message.done"(event) {
    list.done(event.message);
    refreshControls();
    announcer.textContent = text.replyFinished;
  },
  error(event) {
    if (event.client_id && pending.has(event.client_id)) {
      if (!input.value) input.value = pending.get(event.client_id);
      pending.delete(event.client_id);
    }
    showError(event.message);
  },
};

const socket = new ChatSocket(page.socket, {
  onEvent: (event) => handlers[event.type]?.(event),
  onOpen: () => {
    if (conversation) socket.send({ type: "subscribe", conversation });
  },
  onStatus: (status) => {
    connection.hidden = status === "open";
    connection.textContent = status === "signed-out" ? text.signedOut : text.reconnecting;
  },
});

function send() {
  const content = input.value;
  if (!content.trim()) return;
  const clientId = uuid();
  pending.set(clientId, content);
  showError("");
  socket.send({
    type: "send",
    conversation,
    content,
    parent: null,
    model: picker.value || null,
    params: {},
    client_id: clientId,
  });
  input.value = "";
  resize();
  input.focus();
}

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
input.addEventListener("input", resize);
stopButton.addEventListener("click", () => {
  for (const id of list.streamingIds()) socket.send({ type: "stop", message: id });
});
refreshControls();
input.focus();
