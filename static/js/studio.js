// A card that a live update or a new task brings, and that the page does not show yet, takes its place by
// age among the cards (a teammate's card can arrive after a newer one of ours). One older than every card
// on a full page is not news: it is left to the history.
// htmx swaps cards it can find by id; it reports the others with this event.
document.addEventListener("htmx:oobErrorNoTarget", (event) => {
  const card = event.detail.content;
  const cards = document.getElementById("cards");
  if (!cards || !(card instanceof HTMLElement) || !card.classList.contains("card")) return;
  const shown = [...cards.querySelectorAll(":scope > .card")];
  const before = shown.find((other) => Number(other.dataset.created) < Number(card.dataset.created));
  if (!before && shown.length >= Number(cards.dataset.pageSize)) return;
  document.getElementById("empty-state")?.remove();
  card.classList.add("card--arriving");
  cards.insertBefore(card, before ?? null);
  htmx.process(card);
});

// Live refresh may send a card again that has not changed (it looks back a little, so that no change is
// missed). Swapping it anyway would close an open action menu and reset what was typed in it: skip it.
document.addEventListener("htmx:oobBeforeSwap", (event) => {
  const incoming = event.detail.fragment.firstElementChild;
  const current = event.detail.target;
  if (incoming?.classList.contains("card") && incoming.dataset.version === current.dataset.version) {
    event.detail.shouldSwap = false;
  }
});

// An action chosen from an image's menu closes the menu: its new card is already on its way to the top.
// (A 422 is swapped like a success, to show its message, and a network failure has status 0: the menu stays
// open for those.)
document.addEventListener("htmx:afterRequest", (event) => {
  const status = event.detail.xhr?.status ?? 0;
  if (status >= 200 && status < 300) event.detail.elt.closest("[popover]")?.hidePopover();
});

// A tab in the background asks for nothing; coming back, it catches up at once.
document.addEventListener("htmx:beforeRequest", (event) => {
  if (event.detail.elt.id === "pulse" && document.hidden) event.preventDefault();
});
document.addEventListener("visibilitychange", () => {
  const pulse = document.getElementById("pulse"); // only the studio has one
  if (pulse && !document.hidden) htmx.trigger(pulse, "catch-up");
});

// Ctrl+Enter (Cmd+Enter on a Mac) in the prompt sends it, as in most creative tools.
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.id === "id_prompt") {
    event.preventDefault();
    event.target.form.requestSubmit();
  }
});
