// The colour theme: the system's by default, or the one the user picked (kept in this
// browser). A classic script in <head>, so the page never shows in the wrong colours.
(() => {
  const root = document.documentElement;
  const stored = localStorage.getItem("confab-theme");
  if (stored === "light" || stored === "dark") root.dataset.theme = stored;

  const show = (button) => {
    const names = JSON.parse(button.dataset.names); // {"auto": …, "light": …, "dark": …}
    button.textContent = names[root.dataset.theme || "auto"];
  };
  // Listened for at once, on the document: a click that comes before the page has finished
  // loading (its modules can take a while) still changes the theme.
  document.addEventListener("click", (event) => {
    const button = event.target.closest?.("#theme-toggle");
    if (!button) return;
    const next = { auto: "light", light: "dark", dark: "auto" }[root.dataset.theme || "auto"];
    if (next === "auto") {
      delete root.dataset.theme;
      localStorage.removeItem("confab-theme");
    } else {
      root.dataset.theme = next;
      localStorage.setItem("confab-theme", next);
    }
    show(button);
  });
  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme-toggle");
    if (button) show(button);
  });
})();
