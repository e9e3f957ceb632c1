// The composer's files: chosen with the button, dropped on the composer, or pasted; each
// uploaded at once (POST /files/), shown with the progress of its reading as the socket
// tells it (`file.updated`, in every tab of the user), and sent with the next message.
// A file that cannot be read shows why, and is left out of the send; nothing else waits.

export class Uploads {
  constructor({ form, list, input, status, text, uploadUrl, project }) {
    this.form = form;
    this.list = list;
    this.status = status; // this tab's line for files being read, from any tab
    this.text = text;
    this.uploadUrl = uploadUrl;
    this.project = project; // a project page adds its files to the project
    this.files = new Map(); // id -> the file's JSON, for the files of this composer
    this.reading = new Map(); // id -> name, files of the user being read (any tab)
    input?.addEventListener("change", () => {
      this.add([...input.files]);
      input.value = "";
    });
    form.addEventListener("dragover", (event) => {
      if (![...event.dataTransfer.types].includes("Files")) return;
      event.preventDefault();
      form.classList.add("dragging");
    });
    form.addEventListener("dragleave", () => form.classList.remove("dragging"));
    form.addEventListener("drop", (event) => {
      form.classList.remove("dragging");
      if (!event.dataTransfer.files.length) return;
      event.preventDefault();
      this.add([...event.dataTransfer.files]);
    });
    form.addEventListener("paste", (event) => {
      const pasted = [...(event.clipboardData?.files ?? [])];
      if (!pasted.length) return;
      event.preventDefault();
      this.add(pasted);
    });
  }

  // The ids to send, once every file is read: null while one is still being read.
  ready() {
    const files = [...this.files.values()];
    if (files.some((file) => file.status === "processing")) return null;
    return files.filter((file) => file.status === "ready").map((file) => file.id);
  }

  clear() {
    this.files.clear();
    this.list.replaceChildren();
    this.list.hidden = true;
  }

  async add(chosen) {
    for (const file of chosen) {
      const body = new FormData();
      body.append("file", file);
      if (this.project) body.append("project", this.project);
      const token = this.form.querySelector("[name=csrfmiddlewaretoken]").value;
      const response = await fetch(this.uploadUrl, {
        method: "POST",
        body,
        headers: { "X-CSRFToken": token },
      }).catch(() => null);
      if (!response) {
        this.refused(file.name, this.text.uploadFailed);
        continue;
      }
      const answer = await response.json().catch(() => ({ error: this.text.uploadFailed }));
      if (response.status === 201) this.update(answer, { mine: true });
      else this.refused(file.name, answer.error);
    }
  }

  // A file.updated event (or the upload's own answer).
  update(file, { mine = false } = {}) {
    if (mine || this.files.has(file.id)) {
      this.files.set(file.id, file);
      this.show(file);
    }
    if (file.status === "processing") this.reading.set(file.id, `${file.name} ${file.progress}%`);
    else this.reading.delete(file.id);
    this.status.textContent = [...this.reading.values()]
      .map((name) => this.text.fileReading.replace("%s", name))
      .join(" ");
    if (file.status !== "processing" && this.files.has(file.id)) {
      this.status.textContent ||= file.status === "ready" ? this.text.fileReady.replace("%s", file.name) : "";
    }
    this.form.dispatchEvent(new Event("files-changed"));
  }

  show(file) {
    let item = this.list.querySelector(`[data-file="${file.id}"]`);
    if (!item) {
      item = document.createElement("li");
      item.className = "attachment";
      item.dataset.file = file.id;
      this.list.append(item);
    }
    item.dataset.status = file.status;
    const name = document.createElement("span");
    name.className = "attachment-name";
    name.textContent = file.name;
    const parts = [name];
    if (file.status === "processing") {
      const progress = document.createElement("progress");
      progress.max = 100;
      progress.value = file.progress;
      progress.setAttribute("aria-label", this.text.fileReading.replace("%s", file.name));
      parts.push(progress);
    } else if (file.status === "failed") {
      const error = document.createElement("span");
      error.className = "attachment-error";
      error.textContent = ` ${file.error}`;
      parts.push(error);
    }
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link";
    remove.textContent = "×";
    remove.setAttribute("aria-label", this.text.removeFile.replace("%s", file.name));
    remove.addEventListener("click", () => {
      this.files.delete(file.id);
      item.remove();
      this.list.hidden = this.files.size === 0;
      this.form.dispatchEvent(new Event("files-changed"));
    });
    parts.push(remove);
    item.replaceChildren(...parts);
    this.list.hidden = false;
  }

  refused(name, why) {
    const item = document.createElement("li");
    item.className = "attachment";
    item.dataset.status = "failed";
    item.setAttribute("role", "alert");
    item.textContent = why || name;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link";
    remove.textContent = "×";
    remove.setAttribute("aria-label", this.text.removeFile.replace("%s", name));
    remove.addEventListener("click", () => {
      item.remove();
      this.list.hidden = this.list.children.length === 0;
    });
    item.append(remove);
    this.list.append(item);
    this.list.hidden = false;
  }
}
