// A card that a live update or a new task brings, and that the page does not show yet, goes on top.
// htmx swaps cards it can find by id; it reports the others with this event.
document.addEventListener("htmx:oobErrorNoTarget", (event) => {
  const card = event.detail.content;
  const cards = document.getElementById("cards");
  if (!cards || !(card instanceof HTMLElement) || !card.classList.contains("card")) return;
  document.getElementById("empty-state")?.remove();
  cards.prepend(card);
  htmx.process(card);
});
