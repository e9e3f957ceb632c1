// The language picker applies a choice at once; its button is for pages without JavaScript.
document.addEventListener("DOMContentLoaded", () => {
  for (const picker of document.querySelectorAll(".language-form select")) {
    const form = picker.form;
    form.querySelector('[type="submit"]').hidden = true;
    picker.addEventListener("change", () => form.requestSubmit());
  }
});
