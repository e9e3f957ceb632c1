// A shared conversation: its math drawn as on the chat page, and the owner's "Copy link".

import { renderMath } from "./markdown.js";

renderMath(document.getElementById("share-messages"));

const copy = document.getElementById("share-copy");
copy?.addEventListener("click", async () => {
  const label = copy.textContent;
  try {
    await navigator.clipboard.writeText(document.getElementById("share-link").value);
    copy.textContent = copy.dataset.copied;
  } catch {
    copy.textContent = copy.dataset.failed; // the browser refused: say so, never silently
  }
  setTimeout(() => (copy.textContent = label), 1500);
});
