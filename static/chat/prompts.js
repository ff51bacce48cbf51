// The slash menu: "/" at the start of the message box lists the person's prompts and the
// published ones (chat/prompt_views.py), filtered by the title typed after it. Picking one
// replaces the "/query" with its text, once its {{variables}} are filled in a dialog.
// A prompt's words only ever go in through .value and .textContent.
"use strict";

(() => {
  const byId = (id) => document.getElementById(id);
  // As chat/prompts.py VARIABLE.
  const VARIABLE = /\{\{\s*([A-Za-z0-9_]+)\s*\}\}/g;
  let choices = [];
  let active = -1;
  let asked = 0; // each lookup's number: an answer to an older one is dropped
  let dismissed = false; // Escape keeps the menu shut until the "/" is gone
  let pending = null; // the prompt whose variables the dialog asks for, and where it goes

  function slashQuery(box) {
    const match = /^\/([^\n]*)$/.exec(box.value.slice(0, box.selectionStart));
    return match ? match[1] : null;
  }

  function isOpen() {
    const menu = byId("prompt-menu");
    return Boolean(menu && !menu.hidden);
  }

  function close() {
    const menu = byId("prompt-menu");
    const box = byId("message-input");
    if (menu) {
      menu.hidden = true;
      menu.replaceChildren();
    }
    if (box) {
      box.setAttribute("aria-expanded", "false");
      box.removeAttribute("aria-activedescendant");
    }
    choices = [];
    active = -1;
  }

  function highlight(index) {
    const menu = byId("prompt-menu");
    active = index;
    Array.from(menu.children).forEach((option, i) => option.setAttribute("aria-selected", String(i === index)));
    const option = menu.children[index];
    byId("message-input").setAttribute("aria-activedescendant", option.id);
    option.scrollIntoView({block: "nearest"});
  }

  function optionFor(prompt, index) {
    const option = document.createElement("li");
    option.id = `prompt-option-${prompt.id}`;
    option.className = "prompt-option";
    option.setAttribute("role", "option");
    option.dataset.index = String(index);
    const title = document.createElement("span");
    title.textContent = prompt.title;
    option.append(title);
    if (prompt.shared) {
      const tag = document.createElement("span");
      tag.className = "prompt-shared";
      tag.textContent = "shared";
      option.append(" ", tag);
    }
    return option;
  }

  function show(found) {
    // Nothing matches: the menu shuts, so Enter sends a message that just starts with "/".
    if (!found.length) {
      close();
      return;
    }
    choices = found;
    const menu = byId("prompt-menu");
    menu.replaceChildren(...found.map(optionFor));
    menu.hidden = false;
    byId("message-input").setAttribute("aria-expanded", "true");
    highlight(0);
  }

  async function update() {
    const box = byId("message-input");
    const menu = byId("prompt-menu");
    const ticket = ++asked;
    const query = box && menu ? slashQuery(box) : null;
    if (query === null) {
      dismissed = false;
      close();
      return;
    }
    if (dismissed) return;
    try {
      const response = await fetch(`${menu.dataset.source}?q=${encodeURIComponent(query)}`, {
        credentials: "same-origin", headers: {Accept: "application/json"},
      });
      if (!response.ok) throw new Error(`prompts: ${response.status}`);
      const {prompts} = await response.json();
      if (ticket === asked && !dismissed) show(prompts);
    } catch {
      if (ticket === asked) close();
    }
  }

  function insert(text, end) {
    const box = byId("message-input");
    if (!box) return;
    box.value = text + box.value.slice(end);
    box.focus();
    box.setSelectionRange(text.length, text.length);
  }

  function fieldFor(name, index) {
    const label = document.createElement("label");
    label.htmlFor = `prompt-variable-${index}`;
    label.textContent = name;
    const field = document.createElement("input");
    field.id = label.htmlFor;
    field.name = name;
    field.required = true;
    field.autocomplete = "off";
    return [label, field];
  }

  function pick(prompt) {
    const end = byId("message-input").selectionStart;
    close();
    const names = [...new Set(Array.from(prompt.text.matchAll(VARIABLE), (match) => match[1]))];
    if (!names.length) {
      insert(prompt.text, end);
      return;
    }
    const dialog = byId("prompt-variables");
    dialog.querySelector("[data-prompt-title]").textContent = prompt.title;
    const fields = dialog.querySelector("[data-variable-fields]");
    fields.replaceChildren(...names.flatMap(fieldFor));
    pending = {text: prompt.text, end};
    dialog.returnValue = "";
    dialog.showModal();
    fields.querySelector("input").focus();
  }

  // Capturing, and not passed on: app.js would send the message on Enter and stop the
  // reply on Escape.
  document.addEventListener("keydown", (event) => {
    if (event.target.id !== "message-input" || !isOpen() || event.isComposing) return;
    const count = choices.length;
    if (event.key === "ArrowDown") highlight((active + 1) % count);
    else if (event.key === "ArrowUp") highlight((active - 1 + count) % count);
    else if ((event.key === "Enter" || event.key === "Tab") && !event.shiftKey) pick(choices[active]);
    else if (event.key === "Escape") {
      dismissed = true;
      close();
    } else return;
    event.preventDefault();
    event.stopPropagation();
  }, true);

  document.addEventListener("input", (event) => {
    if (event.target.id === "message-input") update();
  });

  document.addEventListener("focusout", (event) => {
    if (event.target.id === "message-input") close();
  });

  // A click on an option must not take the focus from the box first.
  document.addEventListener("mousedown", (event) => {
    if (event.target instanceof Element && event.target.closest("#prompt-menu")) event.preventDefault();
  });

  document.addEventListener("click", (event) => {
    if (!(event.target instanceof Element)) return;
    const option = event.target.closest("#prompt-menu [role=option]");
    if (option) pick(choices[Number(option.dataset.index)]);
    else if (event.target.closest("[data-cancel-variables]")) byId("prompt-variables").close();
  });

  // Enter in a field or Insert submits the dialog's form, closing it with "insert"; Escape
  // and Cancel close it with nothing inserted.
  document.addEventListener("close", (event) => {
    const dialog = event.target;
    if (!(dialog instanceof HTMLDialogElement) || dialog.id !== "prompt-variables" || !pending) return;
    const {text, end} = pending;
    pending = null;
    if (dialog.returnValue !== "insert") {
      byId("message-input")?.focus();
      return;
    }
    const values = new Map(Array.from(dialog.querySelectorAll("[data-variable-fields] input"), (field) => [field.name, field.value]));
    insert(text.replace(VARIABLE, (whole, name) => (values.has(name) ? values.get(name) : whole)), end);
  }, true);
})();
