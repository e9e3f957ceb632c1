// A project's page: files added to the project (uploaded at once, read in the background,
// the progress told by the socket), and confirmations.

import { ChatSocket } from "./socket.js";
import { Uploads } from "./uploads.js";

const data = JSON.parse(document.getElementById("project-data").textContent);
const uploads = new Uploads({
  form: document.getElementById("composer"),
  list: document.getElementById("composer-files"),
  input: document.getElementById("attach-input"),
  status: document.getElementById("file-status"),
  text: data.text,
  uploadUrl: data.uploadUrl,
  project: data.project,
});
new ChatSocket(data.socket, {
  onEvent: (event) => {
    if (event.type === "file.updated") uploads.update(event.file);
  },
  onOpen: () => {},
  onStatus: (status) => {
    document.body.dataset.connection = status;
  },
});
for (const confirmed of document.querySelectorAll("form[data-confirm]")) {
  confirmed.addEventListener("submit", (event) => {
    if (!window.confirm(confirmed.dataset.confirm)) event.preventDefault();
  });
}
