// The colour theme: the system's by default, or the one the user picked (kept in this
// browser). A classic script in <head>, so the page never shows in the wrong colours.
(() => {
  const stored = localStorage.getItem("confab-theme");
  if (stored === "light" || stored === "dark") document.documentElement.dataset.theme = stored;

  document.addEventListener("DOMContentLoaded", () => {
    const button = document.getElementById("theme-toggle");
    if (!button) return;
    const names = JSON.parse(button.dataset.names); // {"auto": …, "light": …, "dark": …}
    const show = () => {
      button.textContent = names[document.documentElement.dataset.theme || "auto"];
    };
    button.addEventListener("click", () => {
      const next = { auto: "light", light: "dark", dark: "auto" }[
        document.documentElement.dataset.theme || "auto"
      ];
      if (next === "auto") {
        delete document.documentElement.dataset.theme;
        localStorage.removeItem("confab-theme");
      } else {
        document.documentElement.dataset.theme = next;
        localStorage.setItem("confab-theme", next);
      }
      show();
    });
    show();
  });
})();
