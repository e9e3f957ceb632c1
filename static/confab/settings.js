// Settings forms: the conversation's settings as a panel over the chat page, the logit bias
// rows (add, remove) of every settings form, and the editors of the tools and the JSON
// schema. Each editor checks what is typed as it is typed, with the server's rules and
// messages (carried by data attributes), and says what is wrong beside the field; a form
// with such a mistake is not sent. The server checks everything again on save. Without
// JavaScript the "Settings" link opens the settings page, and the rows rendered there work.

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
  for (const editor of root.querySelectorAll("textarea[data-json]")) {
    if (editor.dataset.enhanced) continue;
    editor.dataset.enhanced = "1";
    const tools = document.createElement("div");
    tools.className = "json-tools";
    if (editor.dataset.addLabel) tools.append(button(editor.dataset.addLabel, () => addFunction(editor)));
    editor.after(tools);
    check(editor);
  }
  for (const rows of root.querySelectorAll("[data-rows]")) checkRows(rows);
}

function button(label, action) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = "link";
  element.textContent = label;
  element.addEventListener("click", action);
  return element;
}

// ParamsForm's rules (conversations/forms/params.py), for what is typed.
const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const RULES = {
  object: (value, data) => (isObject(value) ? "" : data.badValue),
  tools(value, data) {
    if (!Array.isArray(value) || value.length > 128) return data.badValue;
    const good = (tool) =>
      isObject(tool) &&
      tool.type === "function" &&
      isObject(tool.function) &&
      typeof tool.function.name === "string" &&
      NAME.test(tool.function.name) &&
      (tool.function.parameters === undefined || isObject(tool.function.parameters)) &&
      (tool.function.description === undefined || typeof tool.function.description === "string");
    return value.every(good) ? "" : data.badItem;
  },
};

function parsed(editor) {
  const text = editor.value.trim();
  if (!text) return { value: undefined, error: "" };
  try {
    return { value: JSON.parse(text), error: "" };
  } catch (error) {
    return { value: undefined, error: editor.dataset.badJson.replace("%(error)s", error.message) };
  }
}

function check(editor) {
  const { value, error } = parsed(editor);
  const problem = error || (value === undefined ? "" : RULES[editor.dataset.json](value, editor.dataset));
  say(editor, problem);
  return !problem;
}

// Rows of a token id and a bias: both or neither, a whole number and -100 to 100.
function checkRows(rows) {
  let problem = "";
  for (const row of rows.querySelectorAll("[data-row]")) {
    const [token, bias] = [...row.querySelectorAll("input")].map((input) => input.value.trim());
    if (!token && !bias) continue;
    if (!token || !bias) problem ||= rows.dataset.badRow;
    else if (!/^[0-9]+$/.test(token) || !(Math.abs(Number(bias)) <= 100)) problem ||= rows.dataset.badValue;
  }
  say(rows, problem);
  return !problem;
}

// The mistake beside the field, read out, and the field marked invalid until it is fixed.
function say(field, problem) {
  const id = `${field.id}-check`;
  let note = document.getElementById(id);
  if (!note && problem) {
    note = document.createElement("p");
    note.id = id;
    note.className = "inline-error";
    note.setAttribute("aria-live", "polite");
    (field.matches("textarea") ? field.nextElementSibling : field).after(note);
    const described = field.getAttribute("aria-describedby");
    field.setAttribute("aria-describedby", described ? `${described} ${id}` : id);
  }
  if (note) note.textContent = problem;
  if (field.matches("textarea")) field.setAttribute("aria-invalid", String(Boolean(problem)));
}

// "Add a function": one more tool to fill in, the list laid out again.
function addFunction(editor) {
  const { value, error } = parsed(editor);
  if (error || (value !== undefined && !Array.isArray(value))) {
    check(editor);
    editor.focus();
    return;
  }
  const skeleton = {
    type: "function",
    function: { name: "", description: "", parameters: { type: "object", properties: {} } },
  };
  editor.value = JSON.stringify([...(value ?? []), skeleton], null, 2);
  check(editor);
  editor.focus();
  const name = editor.value.lastIndexOf('"name": ""') + '"name": "'.length;
  editor.setSelectionRange(name, name);
}

// Every editor of the form checked; false, with the first mistake focused, if any.
function checkForm(form) {
  const good = [
    ...[...form.querySelectorAll("textarea[data-json]")].map((editor) => [editor, check(editor)]),
    ...[...form.querySelectorAll("[data-rows]")].map((rows) => [rows.querySelector("input"), checkRows(rows)]),
  ];
  const first = good.find(([, ok]) => !ok);
  first?.[0]?.focus();
  return !first;
}

document.addEventListener("input", (event) => {
  const editor = event.target.closest("textarea[data-json]");
  if (editor) check(editor);
  const rows = event.target.closest("[data-rows]");
  if (rows) checkRows(rows);
});
// Before any other handler (the panel's save): a form with a mistake shown is not sent.
document.addEventListener(
  "submit",
  (event) => {
    const form = event.target.closest(".settings-form");
    if (form && !checkForm(form)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  },
  true,
);

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
