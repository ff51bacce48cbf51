// Only what htmx cannot do: keys, the clipboard, dialogs, focus, and following the stream.
// No inline handlers anywhere (the CSP forbids them): everything is delegated from here.
"use strict";

const byId = (id) => document.getElementById(id);
// Set by the page's own actions: once their answer has redrawn what held the focus, the
// message box gets it back. A click elsewhere meanwhile means the person moved on.
let refocusPending = false;

function focusMessageBox() {
  refocusPending = false;
  const box = byId("message-input");
  if (box) box.focus();
}

// Keys: Enter sends, Shift+Enter is a new line, Escape closes an edit or stops the reply.
document.addEventListener("keydown", (event) => {
  const target = event.target instanceof Element ? event.target : document.body;
  if (event.key === "Escape") {
    const editor = target.closest("details.edit[open]");
    if (editor) {
      editor.open = false;
      editor.querySelector("summary").focus();
      return;
    }
    if (target.closest("dialog")) return; // the browser closes the dialog
    const stop = byId("stop-button");
    if (stop && !stop.disabled && stop.offsetParent !== null) {
      stop.click();
      focusMessageBox();
    }
    return;
  }
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing && target.matches("textarea[data-enter-sends]")) {
    event.preventDefault();
    target.form.requestSubmit();
  }
});

// The clipboard. Code blocks come with their copy buttons (chat/markdown.py).
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.className = "visually-hidden";
  document.body.append(area);
  area.select();
  document.execCommand("copy");
  area.remove();
}

// A message's Copy copies what was written (a reply's markdown), fetched from the server
// while the click still counts as the person's; its rendered text where that fails.
async function copySource(button) {
  const source = fetch(button.dataset.source, {credentials: "same-origin"}).then((response) => {
    if (!response.ok) throw new Error(`source: ${response.status}`);
    return response.blob();
  });
  source.catch(() => {}); // handled below, by falling back
  try {
    if (!(navigator.clipboard && window.isSecureContext && window.ClipboardItem)) throw new Error("no clipboard");
    await navigator.clipboard.write([new ClipboardItem({"text/plain": source})]);
  } catch {
    await copyText(byId(button.dataset.copy).innerText.trim());
  }
}

function showCopied(button) {
  button.classList.add("copied");
  if (!button.classList.contains("copy-code")) button.textContent = "Copied";
  setTimeout(() => {
    button.classList.remove("copied");
    if (!button.classList.contains("copy-code")) button.textContent = "Copy";
  }, 1500);
}

document.addEventListener("click", async (event) => {
  const button = event.target instanceof Element ? event.target.closest("button") : null;
  if (!button) return;
  if (button.classList.contains("copy-code")) {
    await copyText(button.parentElement.querySelector("pre").innerText);
    showCopied(button);
  } else if (button.dataset.source) {
    await copySource(button);
    showCopied(button);
  } else if (button.dataset.opens) {
    byId(button.dataset.opens).showModal();
  } else if (button.hasAttribute("data-closes-dialog")) {
    // A plain button, not a submit: Enter in the dialog's field submits its action.
    button.closest("dialog").close();
  } else if (button.hasAttribute("data-close-edit")) {
    const editor = button.closest("details.edit");
    editor.open = false;
    editor.querySelector("summary").focus();
  } else if (button.id === "jump-latest") {
    following = true;
    scrollToLatest();
    focusMessageBox();
  } else if (button.classList.contains("sidebar-toggle")) {
    const open = document.body.classList.toggle("sidebar-open");
    button.setAttribute("aria-expanded", String(open));
  } else if (button.hasAttribute("ws-send")) {
    refocusPending = true;
  }
});

document.addEventListener("pointerdown", (event) => {
  if (!(event.target instanceof Element && event.target.closest("[ws-send]"))) refocusPending = false;
});

document.addEventListener("submit", (event) => {
  if (event.target instanceof Element && event.target.hasAttribute("ws-send")) refocusPending = true;
});

document.addEventListener("toggle", (event) => {
  const editor = event.target;
  if (editor instanceof HTMLDetailsElement && editor.classList.contains("edit") && editor.open) {
    const box = editor.querySelector("textarea");
    box.focus();
    box.setSelectionRange(box.value.length, box.value.length);
  }
}, true);

// A reply's thinking section stays open across its final frame, which redraws the
// reply, if the person opened it while it streamed.
const openThinking = new Set();
document.addEventListener("toggle", (event) => {
  const section = event.target;
  if (!(section instanceof HTMLDetailsElement) || !section.classList.contains("thinking")) return;
  if (section.open) openThinking.add(section.id);
  else if (section.isConnected) openThinking.delete(section.id);
}, true);

document.addEventListener("htmx:wsAfterMessage", () => {
  openThinking.forEach((id) => {
    const section = byId(id);
    if (section && !section.open) section.open = true;
  });
});

// Following the stream: stay at the bottom unless the person scrolled up, and then offer
// a way back. Only a move up stops following, since growing text also fires scroll events.
let following = true;
let lastTop = 0;

function atBottom(list) {
  return list.scrollHeight - list.scrollTop - list.clientHeight < 48;
}

function scrollToLatest() {
  const list = byId("messages");
  if (list) list.scrollTop = list.scrollHeight;
}

function updateJump() {
  const jump = byId("jump-latest");
  if (jump) jump.hidden = following;
}

document.addEventListener("scroll", (event) => {
  const list = event.target;
  if (!(list instanceof Element) || list.id !== "messages") return;
  if (atBottom(list)) following = true;
  else if (list.scrollTop < lastTop) following = false;
  lastTop = list.scrollTop;
  updateJump();
}, true);

// A reply's first text marks it streaming, as the server did when that text arrived:
// htmx swaps whole elements out of band, and cannot change one attribute of another.
function markStreaming() {
  document.querySelectorAll("[data-role=assistant][data-status=pending]").forEach((reply) => {
    if (reply.querySelector(".body").textContent) reply.dataset.status = "streaming";
  });
}

document.addEventListener("htmx:wsAfterMessage", () => {
  markStreaming();
  if (following) scrollToLatest();
  updateJump();
  const title = byId("conversation-title");
  if (title) document.title = `${title.textContent} · Chat`;
  if (refocusPending && (document.activeElement === document.body || document.activeElement === null)) {
    focusMessageBox();
  }
});

document.addEventListener("DOMContentLoaded", scrollToLatest);

// The fields of the sidebar this page sent: the redraw its change brings may clear them.
const sentFromSidebar = new Set();
document.addEventListener("htmx:beforeRequest", (event) => {
  const form = event.target instanceof Element ? event.target.closest("#conversation-list form") : null;
  form?.querySelectorAll("input[id]").forEach((field) => sentFromSidebar.add(field.id));
});

// A redrawn sidebar or Organise menu (another tab changed something) keeps the folders
// and menus that were open, and the focus of a keyboard user who was inside it, with what
// they were typing there and where.
document.addEventListener("htmx:oobBeforeSwap", (event) => {
  const {target, fragment} = event.detail;
  if (target.id !== "conversation-list" && target.id !== "organise") return;
  const open = new Set([...target.querySelectorAll("details[open][id]")].map((details) => details.id));
  if (target.matches("details[open][id]")) open.add(target.id);
  fragment.querySelectorAll("details[id]").forEach((details) => {
    if (open.has(details.id)) details.open = true;
  });
  const focused = document.activeElement;
  const sent = new Set(sentFromSidebar);
  if (target.id === "conversation-list") sentFromSidebar.clear();
  if (!focused || !focused.id || !target.contains(focused)) return;
  const typing = focused.matches("input[type=text], input:not([type])") && !sent.has(focused.id);
  const twin = typing ? fragment.querySelector(`#${CSS.escape(focused.id)}`) : null;
  const [start, end] = [focused.selectionStart, focused.selectionEnd];
  if (twin && focused.value !== focused.defaultValue) twin.value = focused.value;
  // After the swap, on the new elements: the target is gone by then.
  document.addEventListener(
    "htmx:oobAfterSwap",
    () => {
      const field = byId(focused.id);
      field?.focus();
      if (twin && field === twin) field.setSelectionRange(start, end);
    },
    {once: true},
  );
});

// Dragging a chat onto a folder, or back onto the plain list, is the Organise menu's Move.
let dragged = null;

function dropZone(event) {
  return event.target instanceof Element ? event.target.closest("#conversation-list [data-drop-folder]") : null;
}

document.addEventListener("dragstart", (event) => {
  const link = event.target instanceof Element ? event.target.closest("#conversation-list a[data-move]") : null;
  dragged = link ? link.dataset.move : null;
});

document.addEventListener("dragend", () => {
  dragged = null;
});

document.addEventListener("dragover", (event) => {
  const zone = dropZone(event);
  if (dragged && zone) event.preventDefault();
});

document.addEventListener("drop", (event) => {
  const zone = dropZone(event);
  if (!dragged || !zone) return;
  event.preventDefault();
  htmx.ajax("POST", dragged, {source: zone, swap: "none", values: {folder: zone.dataset.dropFolder}});
  dragged = null;
});

// Signed out (close code 4401, see chat/access.py): htmx does not reconnect on it. The
// server says why in #signed-out just before it closes; if that frame never came, the
// notice shows its default words. Nothing typed after this is sent.
const SIGNED_OUT = 4401;

document.addEventListener("htmx:wsClose", (event) => {
  if (!event.detail.event || event.detail.event.code !== SIGNED_OUT) return;
  const notice = byId("signed-out");
  if (notice) notice.hidden = false;
  document.querySelectorAll("form[ws-send] [type=submit], button[ws-send], #stop-button").forEach((control) => {
    control.disabled = true;
  });
  document.body.classList.add("is-signed-out");
});

// Back in touch after the server said live updates were unavailable (close code 1013).
document.addEventListener("htmx:wsOpen", () => {
  const notice = byId("connection-notice");
  if (notice) notice.hidden = true;
});
