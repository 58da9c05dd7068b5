// The library's behaviour that htmx cannot express (CSP-strict: no inline scripts or handlers).
// Loaded again when a boosted link swaps the page in: the guard keeps one set of listeners.
(() => {
  if (window.mjLibrary) return;
  window.mjLibrary = true;
  const ANCHOR_KEY = "mjstudio:library-anchor";

  // Back to the same place. The address bar always names every row loaded so far (the server sets it as
  // pages arrive by scrolling), so a fresh load of it (Back after the browser dropped the page, a reload)
  // shows the same rows; here we put the tile the reader was looking at back where it was on screen.
  // (When the browser kept the page whole, in its back/forward cache, nothing needs doing.)
  const firstVisibleTile = () => {
    const top = document.querySelector(".lib-bar")?.getBoundingClientRect().bottom ?? 0;
    return [...document.querySelectorAll("#lib-grid .tile")].find((tile) => tile.getBoundingClientRect().bottom > top);
  };
  window.addEventListener("pagehide", () => {
    const visible = firstVisibleTile();
    if (!visible || !document.getElementById("lib-grid")) return;
    // An opened stack comes back folded: its first tile is the folded stack's own.
    const tile = visible.closest(".stack-open")?.querySelector(".tile") ?? visible;
    const anchor = { href: location.href, id: tile.id, top: tile.getBoundingClientRect().top };
    sessionStorage.setItem(ANCHOR_KEY, JSON.stringify(anchor));
  });
  const restore = () => {
    const navigation = performance.getEntriesByType("navigation")[0];
    if (!navigation || !["back_forward", "reload"].includes(navigation.type)) return;
    let anchor = null;
    try {
      anchor = JSON.parse(sessionStorage.getItem(ANCHOR_KEY) || "null");
    } catch {
      return;
    }
    const tile = anchor && anchor.href === location.href && document.getElementById(anchor.id);
    if (tile) window.scrollTo(0, window.scrollY + tile.getBoundingClientRect().top - anchor.top);
  };
  if ("scrollRestoration" in history && document.getElementById("lib-grid")) history.scrollRestoration = "manual";
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", restore, { once: true });
  else restore();

  // Keyboard: "/" goes to the search box; "f" stars or unstars the image in focus (its star has focus,
  // or anything else in its tile).
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const typing = event.target.closest?.("input, textarea, select, [contenteditable]");
    if (event.key === "/" && !typing) {
      const search = document.getElementById("lib-q");
      if (search) {
        event.preventDefault();
        search.focus();
        search.select();
      }
    } else if ((event.key === "f" || event.key === "F") && !typing) {
      const star = event.target.closest?.(".tile")?.querySelector(".fav__btn");
      if (star) {
        event.preventDefault();
        star.click();
      }
    }
  });

  // A stack opened or folded in place keeps the keyboard there: on its first image once opened, on its
  // count once folded (the element that had focus was swapped out).
  let swapped = null;
  document.addEventListener("htmx:beforeSwap", (event) => {
    const target = event.detail.target;
    swapped = event.detail.requestConfig?.elt?.matches?.(".tile__stack, .stack-open__fold")
      ? { before: target.previousElementSibling, parent: target.parentElement }
      : null;
  });
  document.addEventListener("htmx:afterSettle", () => {
    if (!swapped) return;
    const { before, parent } = swapped;
    swapped = null;
    const element = before ? before.nextElementSibling : parent?.firstElementChild;
    const focusable = element?.matches(".stack-open") ? element.querySelector(".tile__open") : element?.querySelector(".tile__stack");
    focusable?.focus();
  });
})();
