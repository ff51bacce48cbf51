// Only what htmx cannot do: keys, and following the stream while at the bottom.
document.addEventListener("keydown", (event) => {
  if (event.key === "Escape") {
    const stop = document.getElementById("stop-button");
    if (stop && !stop.disabled && stop.offsetParent !== null) stop.click();
    return;
  }
  const box = event.target;
  if (box.id === "message-input" && event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    box.form.requestSubmit();
  }
});

let following = true;
document.addEventListener("scroll", (event) => {
  const list = event.target;
  if (list.id === "messages") {
    following = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }
}, true);

document.addEventListener("htmx:wsAfterMessage", () => {
  const list = document.getElementById("messages");
  if (list && following) list.scrollTop = list.scrollHeight;
});
