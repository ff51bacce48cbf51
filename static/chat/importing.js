// Import: the file is sent by XMLHttpRequest, whose upload events move the progress bar;
// the answer's result (counts, or what is wrong with the file) replaces the one shown.
// Without this script the form posts as usual and the page comes back the same way.
"use strict";

(() => {
  const form = document.getElementById("import-form");
  if (!form) return;
  const progress = document.getElementById("import-progress");
  const status = document.getElementById("import-status");
  const button = form.querySelector("button[type=submit]");

  function showResult(section) {
    document.getElementById("import-result").replaceWith(document.adoptNode(section));
  }

  function showError(text) {
    const section = document.createElement("section");
    section.id = "import-result";
    const error = document.createElement("p");
    error.className = "error";
    error.setAttribute("role", "alert");
    error.textContent = `${text} Nothing was imported.`;
    section.append(error);
    showResult(section);
  }

  function done() {
    progress.hidden = true;
    status.textContent = "";
    button.disabled = false;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = form.elements.file.files[0];
    if (!file) return;
    if (file.size > Number(form.dataset.maxBytes)) {
      showError(form.dataset.tooBig);
      return;
    }
    const request = new XMLHttpRequest();
    request.open("POST", form.action);
    request.upload.addEventListener("progress", (progressEvent) => {
      if (!progressEvent.lengthComputable) return;
      progress.max = progressEvent.total;
      progress.value = progressEvent.loaded;
      status.textContent = `Uploading… ${Math.floor((100 * progressEvent.loaded) / progressEvent.total)}%`;
    });
    request.upload.addEventListener("load", () => {
      progress.removeAttribute("value");
      status.textContent = "Importing…";
    });
    request.addEventListener("load", () => {
      const answer = new DOMParser().parseFromString(request.responseText, "text/html");
      const section = answer.getElementById("import-result");
      if (section) showResult(section);
      else showError(`The import failed (${request.status}).`);
      if (request.status === 200) form.reset();
      done();
    });
    request.addEventListener("error", () => {
      showError(`${file.name} could not be sent; try again.`);
      done();
    });
    button.disabled = true;
    progress.value = 0;
    progress.hidden = false;
    status.textContent = "Uploading…";
    request.send(new FormData(form));
  });
})();
