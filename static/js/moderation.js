// Flagging and the moderation page.
//
// A flag link (an image menu's "Flag…", a card's or a task page's "Flag") opens a page of its own without JS; with
// htmx, its form lands in the page's one dialog (flag.html#dialog), which htmx cannot open by itself: it opens here,
// once settled, and gives focus back to what opened it when it closes.
let flagOpener = null;

document.addEventListener("click", (event) => {
  const link = event.target.closest?.("a.flag-open, a.menu__flag");
  if (!link || !window.htmx || !document.getElementById("flag-body")) return;
  event.preventDefault();
  const menu = link.closest("[popover]");
  // From the image menu, focus goes back to the image's Actions button (the menu itself is closed).
  flagOpener = menu ? document.getElementById(menu.dataset.card ?? "")?.querySelector(`.shot__actions[value="${menu.dataset.index}"]`) : link;
  menu?.hidePopover();
  htmx.ajax("GET", link.getAttribute("href"), { target: "#flag-body", swap: "innerHTML" });
});

document.addEventListener("htmx:afterSettle", (event) => {
  const dialog = document.getElementById("flag-dialog");
  if (!dialog || event.detail.target.id !== "flag-body" || dialog.open) return;
  dialog.showModal();
  dialog.querySelector("input[name=reason]")?.focus();
});

document.addEventListener(
  "close",
  (event) => {
    if (event.target.id !== "flag-dialog") return;
    document.getElementById("flag-body").replaceChildren();
    flagOpener?.focus({ preventScroll: true });
    flagOpener = null;
  },
  true,
);

// The moderation page: "Select all" ticks every row of the page (without JS each row is ticked by hand, so the
// box stays hidden). Armed again whenever htmx swaps the queue in after an act.
function armQueue() {
  const all = document.querySelector(".mod-all");
  if (!all || all.dataset.armed) return;
  all.dataset.armed = "true";
  all.closest("label").hidden = false;
  const picks = () => [...document.querySelectorAll(".mod-item__pick")];
  const sync = () => {
    const checked = picks().filter((p) => p.checked).length;
    all.checked = checked > 0 && checked === picks().length;
    all.indeterminate = checked > 0 && checked < picks().length;
  };
  all.addEventListener("change", () => {
    for (const pick of picks()) pick.checked = all.checked;
  });
  document.getElementById("mod-list")?.addEventListener("change", sync);
  sync();
}
document.addEventListener("DOMContentLoaded", armQueue);
document.addEventListener("htmx:afterSettle", armQueue);
