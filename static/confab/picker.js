// The model picker: the models this user may pick, refreshed without a reload whenever the
// server says the models on offer changed (a provider back, the bundled model ready, a
// model enabled in admin), and the notes that go with it: providers that cannot be reached,
// and what the bundled demo model is.

export function wirePicker({ url, text }) {
  const picker = document.getElementById("model-picker");
  const regenerate = document.getElementById("regenerate-model");
  const notices = document.getElementById("provider-notices");
  const demoNote = document.getElementById("demo-note");

  function showDemoNote() {
    demoNote.hidden = !picker.selectedOptions[0]?.hasAttribute("data-bundled");
  }

  function fill(select, options, selected) {
    select.replaceChildren(
      ...options.map((option) => {
        const element = new Option(option.label, option.id, false, option.id === selected);
        element.disabled = option.disabled;
        element.toggleAttribute("data-bundled", option.bundled);
        return element;
      }),
    );
  }

  async function refresh() {
    const query = picker.value ? `?selected=${encodeURIComponent(picker.value)}` : "";
    const response = await fetch(url + query).catch(() => null);
    const offer = await response?.json().catch(() => null);
    if (!response?.ok || !offer) return; // offline or signed out: the next change retries
    // The user's choice stands if they may still pick it, even if made meanwhile.
    const still = offer.options.find((option) => option.id === picker.value && !option.disabled);
    fill(picker, offer.options, still ? still.id : offer.selected);
    fill(regenerate, offer.options, null);
    notices.replaceChildren(
      ...offer.notices.map((notice) => {
        const item = document.createElement("li");
        item.textContent = notice;
        return item;
      }),
    );
    const welcome = document.getElementById("welcome");
    if (welcome) welcome.textContent = offer.empty ? text.noModel : text.askAnything;
    showDemoNote();
  }

  picker.addEventListener("change", showDemoNote);
  showDemoNote();
  return { refresh };
}
