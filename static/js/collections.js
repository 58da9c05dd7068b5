// The per-image collections control (image_collections.html): an image's link opens a page of its own without
// JS; with htmx, the control lands in the page's one dialog, which htmx cannot open by itself: it opens here.
// A modal dialog keeps focus inside, closes with Esc or a click outside (closedby="any"), and gives focus back
// to the link that opened it. Opened once settled: htmx has then wired the toggles that showModal() focuses, so a
// key pressed at once cannot send a plain form instead.
document.addEventListener("htmx:afterSettle", (event) => {
  const dialog = document.getElementById("collect-dialog");
  if (!dialog || event.detail.target.id !== "collect-body" || dialog.open) return;
  dialog.showModal();
});
