// Attachments: a file chosen with the Attach button, dropped on the message box or pasted
// into it is uploaded at once and shown above the box, where it can be removed; the
// message carries the files still there (their hidden inputs) when it is sent.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);
  let uploading = 0;

  function csrfToken() {
    return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
  }

  function showError(text) {
    const composer = byId("composer");
    if (!composer) return;
    let error = composer.querySelector(".error");
    if (!error) {
      error = document.createElement("p");
      error.className = "error";
      error.setAttribute("role", "alert");
      composer.append(error);
    }
    error.textContent = text;
  }

  async function upload(files) {
    const list = byId("attachments");
    if (!list) return;
    for (const file of files) {
      const pending = document.createElement("li");
      pending.className = "attachment uploading";
      pending.textContent = `Uploading ${file.name}…`;
      list.append(pending);
      uploading += 1;
      const form = new FormData();
      form.append("file", file);
      try {
        const response = await fetch(list.dataset.upload, {
          method: "POST", body: form, credentials: "same-origin", headers: {"X-CSRFToken": csrfToken()},
        });
        const text = await response.text();
        if (response.ok && pending.isConnected) pending.outerHTML = text;
        else if (!response.ok) showError(text);
      } catch {
        showError(`${file.name} could not be uploaded; try again.`);
      } finally {
        uploading -= 1;
        pending.remove();
      }
    }
  }

  function carriesFiles(event) {
    return event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files");
  }

  document.addEventListener("change", (event) => {
    if (event.target.id !== "attach-input") return;
    upload(Array.from(event.target.files));
    event.target.value = "";
  });

  document.addEventListener("click", (event) => {
    const button = event.target instanceof Element ? event.target.closest("button") : null;
    if (!button) return;
    if (button.hasAttribute("data-attach")) {
      byId("attach-input").click();
    } else if (button.classList.contains("remove-attachment")) {
      button.closest("li").remove();
      byId("message-input").focus();
    }
  });

  document.addEventListener("dragover", (event) => {
    if (carriesFiles(event) && event.target instanceof Element && event.target.closest("#composer")) {
      event.preventDefault();
      byId("composer").classList.add("dropping");
    }
  });

  document.addEventListener("dragleave", () => byId("composer")?.classList.remove("dropping"));

  document.addEventListener("drop", (event) => {
    if (!(event.target instanceof Element && event.target.closest("#composer")) || !carriesFiles(event)) return;
    event.preventDefault();
    byId("composer").classList.remove("dropping");
    upload(Array.from(event.dataTransfer.files));
  });

  document.addEventListener("paste", (event) => {
    const files = event.clipboardData ? Array.from(event.clipboardData.files) : [];
    if (!files.length || event.target.id !== "message-input") return;
    event.preventDefault();
    upload(files);
  });

  // A message sent while a file is still on its way would go without it.
  document.addEventListener("htmx:wsConfigSend", (event) => {
    if (uploading && event.target.id === "composer") {
      event.preventDefault();
      showError("Wait for the files to finish uploading, then send.");
    }
  });
})();
