// Settings forms: the conversation's settings as a panel over the chat page, and the
// logit bias rows (add, remove) of every settings form. Without JavaScript the "Settings"
// link opens the settings page, and the rows rendered there still work.

const panel = document.getElementById("settings-panel");
const panelBody = document.getElementById("settings-panel-body");
// The "Settings" link: looked up when used, as a conversation started on the chat page gets
// its header (with the link) only then.
const opener = () => document.querySelector('[aria-controls="settings-panel"]');

function panelUrl(url) {
  const withPanel = new URL(url, location.href);
  withPanel.searchParams.set("panel", "1");
  return withPanel;
}

// The forms come from our own server, rendered and escaped by Django templates: no model
// output goes in unescaped.
function showForms(html) {
  panelBody.innerHTML = html;
  enhance(panelBody);
  const invalid = panelBody.querySelector('[aria-invalid="true"]');
  (invalid ?? panelBody.querySelector("input:not([type=hidden]), select, textarea"))?.focus();
}

async function openPanel() {
  const href = opener().href;
  const response = await fetch(panelUrl(href)).catch(() => null);
  if (!response?.ok || response.redirected) {
    location.assign(href); // signed out, gone or offline: the page says why
    return;
  }
  const html = await response.text();
  if (!panel.open) panel.showModal();
  showForms(html);
}

async function save(form) {
  form.querySelector('[type="submit"]').disabled = true; // one save at a time
  const response = await fetch(panelUrl(form.action), {
    method: "POST",
    body: new FormData(form),
    // A redirect means saved; following it here would use up the "Settings saved." notice.
    redirect: "manual",
  }).catch(() => null);
  if (response?.type === "opaqueredirect") {
    location.assign(form.dataset.done);
  } else if (response?.ok) {
    showForms(await response.text()); // the forms again, each error beside its field
  } else {
    form.submit(); // let the browser show what went wrong
  }
}

function enhance(root) {
  for (const button of root.querySelectorAll("[data-add-row], [data-remove-row]")) {
    button.hidden = false;
  }
}

function addRow(rows) {
  const row = rows.querySelector("[data-row-template]").content.cloneNode(true);
  rows.querySelector("[data-row-list]").append(row);
  enhance(rows);
  rows.querySelector("[data-row-list] [data-row]:last-child input")?.focus();
}

function removeRow(row) {
  const list = row.parentElement;
  if (list.children.length > 1) {
    const rows = row.closest("[data-rows]");
    row.remove();
    rows.querySelector("[data-add-row]").focus();
  } else {
    for (const input of row.querySelectorAll("input")) input.value = ""; // keep one row
  }
}

document.addEventListener("click", (event) => {
  const add = event.target.closest("[data-add-row]");
  const remove = event.target.closest("[data-remove-row]");
  if (add) addRow(add.closest("[data-rows]"));
  if (remove) removeRow(remove.closest("[data-row]"));
});
enhance(document);

if (panel) {
  document.addEventListener("click", (event) => {
    if (!event.target.closest('[aria-controls="settings-panel"]')) return;
    if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) {
      return; // a new tab or window: the settings page
    }
    event.preventDefault();
    openPanel();
  });
  // Closed by its button or Esc, not by a click beside it: that would lose what was typed.
  panel.addEventListener("click", (event) => {
    if (event.target.closest("[data-close]")) panel.close();
  });
  // Esc closes the panel (the browser does that); it must not also stop a reply or an
  // edit, as it does on the chat page.
  panel.addEventListener("keydown", (event) => event.stopPropagation());
  panel.addEventListener("submit", (event) => {
    const form = event.target.closest("[data-settings-form]");
    if (!form) return; // "Reset to model defaults" posts as any form does
    event.preventDefault();
    save(form);
  });
  panel.addEventListener("close", () => {
    panelBody.replaceChildren(); // its labels would otherwise stay in the page
    opener()?.focus();
  });
}
