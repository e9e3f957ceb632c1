// What each message offers under it: copy, regenerate (with this or another model),
// the request it was sent with, and delete; a tool's call waiting for approval, an answer.
// Edit belongs to the composer (chat.js).

export function wireMessageActions({ container, socket, text, page, showError }) {
  const regenerate = document.getElementById("regenerate-dialog");
  const drawer = document.getElementById("request-drawer");
  let regenerating = null; // the reply the "Another model…" dialog is for

  for (const dialog of [regenerate, drawer]) {
    dialog.addEventListener("click", (event) => {
      if (event.target.closest("[data-close]") || event.target === dialog) dialog.close();
    });
  }

  regenerate.querySelector("form").addEventListener("submit", (event) => {
    event.preventDefault();
    const model = document.getElementById("regenerate-model").value;
    regenerate.close();
    send({ type: "regenerate", message: regenerating, model });
  });

  document.getElementById("request-copy").addEventListener("click", (event) => {
    copy(document.getElementById("request-json").textContent, event.target);
  });

  // A socket that is down sends nothing: the user hears of it.
  function send(event) {
    showError(socket.send(event) ? "" : text.notConnected);
  }

  async function copy(value, button) {
    try {
      await navigator.clipboard.writeText(value);
      flashLabel(button, text.copied);
    } catch {
      showError(text.copyFailed);
    }
  }

  container.addEventListener("click", async (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.dataset.copy) {
      await copy(source(button.closest("article")), button);
    } else if (button.dataset.retry) {
      send({ type: "regenerate", message: button.dataset.retry });
    } else if (button.dataset.retryWith) {
      regenerating = button.dataset.retryWith;
      regenerate.showModal();
    } else if (button.dataset.approve || button.dataset.approveAlways || button.dataset.deny) {
      // Every tab shows the answer (message.updated, or message.done for a denial).
      const message = button.dataset.approve || button.dataset.approveAlways || button.dataset.deny;
      const allow = !button.dataset.deny;
      send({ type: "approve", message, allow, always: Boolean(button.dataset.approveAlways) });
    } else if (button.dataset.request) {
      await showRequest(button.dataset.request);
    } else if (button.dataset.delete && window.confirm(text.confirmDeleteMessage)) {
      const form = document.getElementById("delete-message-form");
      form.action = page.messageUrl.replace("{id}", button.dataset.delete) + "delete/";
      form.submit();
    }
  });

  async function showRequest(id) {
    const url = page.messageUrl.replace("{id}", id) + "request.json";
    // Offline, signed out (a login page is not JSON) or refused: the user is told.
    const response = await fetch(url).catch(() => null);
    const data = await response?.json().catch(() => null);
    if (!response?.ok || !data) {
      showError(data?.error ?? text.requestFailed);
      return;
    }
    document.getElementById("request-json").textContent = JSON.stringify(data.request, null, 2);
    const usage = document.getElementById("request-usage");
    usage.replaceChildren();
    const lang = document.documentElement.lang; // numbers grouped as the page's language does
    const rows = [
      [text.model, data.model],
      [text.promptTokens, data.usage.prompt_tokens],
      [text.completionTokens, data.usage.completion_tokens],
      [text.cachedTokens, data.usage.cached_tokens],
      [text.reasoningTokens, data.usage.reasoning_tokens],
      [
        text.totalTokens,
        (data.usage.estimated ? "≈ " : "") + data.usage.total_tokens.toLocaleString(lang),
      ],
      [text.cost, data.cost ?? "—"],
      [text.finishReason, data.finish_reason ?? data.status],
    ];
    if (data.error) rows.push([text.error, data.error]);
    for (const [name, value] of rows) {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = name;
      dd.textContent = typeof value === "number" ? value.toLocaleString(lang) : value;
      usage.append(dt, dd);
    }
    drawer.showModal();
  }
}

// What a message said, as written: the markdown source of a reply, the text of a message.
function source(article) {
  const template = article.querySelector("template.message-source");
  return template ? template.content.textContent : article.querySelector(".message-body").textContent;
}

function flashLabel(button, label) {
  button.dataset.label ??= button.textContent;
  button.textContent = label;
  setTimeout(() => (button.textContent = button.dataset.label), 1500);
}
