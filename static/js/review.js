// Review in place: an image's state (☆ shortlisted, ✓ approved, ✕ rejected) from its control on a studio card, a
// library tile or the task page, from the image menu, or by key on a focused image: S shortlist, A approve,
// R reject, 0 clear. Everything works without this file (library and task page buttons submit the page's
// #review-form; a studio card's opens the image's menu page); here changes go through htmx, which swaps the
// studio's card (its version then matches the live refresh's) or the image's control, and the keyboard focus is
// put back where it was. The server checks the role: a refusal is shown for a few seconds.
(() => {
  if (window.mjReview) return;
  window.mjReview = true;
  const KEYS = { s: "shortlisted", a: "approved", r: "rejected", 0: "none" };
  let focusBack = null;

  // The image an element belongs to: a tile or a plate names it; a studio card's image, by its file's URL.
  function imageOf(element) {
    const named = element?.closest?.("[data-image]") ?? element?.closest?.("#image-menu")?.querySelector("[data-image]");
    if (named) return named.dataset.image;
    const href = element?.closest?.(".card .shot")?.querySelector(".shot__link")?.getAttribute("href") ?? "";
    return href.match(/\/images\/(\d+)\//)?.[1];
  }
  const urlOf = (imageId) => document.getElementById("review-form")?.dataset.url.replace("/0/", `/${imageId}/`);
  function stateOf(imageId) {
    const control = document.getElementById(`rv${imageId}`) ?? figureOf(imageId)?.querySelector(".rv");
    return control?.className.match(/\brv--(\w+)/)?.[1] ?? "none";
  }
  function figureOf(imageId) {
    return [...document.querySelectorAll(".card .shot")].find((figure) => imageOf(figure) === String(imageId));
  }

  // Where the focus is, as a selector that finds the same element in the markup that replaces it.
  function place(element) {
    if (!element || element === document.body) return null;
    const cls = element.classList[0] ? `.${element.classList[0]}` : element.tagName.toLowerCase();
    const shot = element.closest(".card .shot[data-index]");
    if (shot) return `#${shot.closest(".card").id} .shot[data-index="${shot.dataset.index}"] ${cls}`;
    if (element.id) return `#${element.id}`;
    const named = element.closest("[data-image]");
    return named ? `[data-image="${named.dataset.image}"] ${cls}` : null;
  }

  function send(imageId, state) {
    const url = urlOf(imageId);
    const card = figureOf(imageId)?.closest(".card");
    const target = card ? `#${card.id}` : `#rv${imageId}`;
    if (!url || !window.htmx || !document.querySelector(target)) return false;
    focusBack = { element: document.activeElement, selector: place(document.activeElement) };
    // The CSRF header comes from <body hx-headers>.
    htmx.ajax("POST", url, { source: document.body, target, swap: "outerHTML", values: { state } });
    return true;
  }

  // The image menu's row, for the image it is open for (studio.js fills the rest in on the same click).
  function fillMenu() {
    const menu = document.getElementById("image-menu");
    const row = menu?.querySelector(".menu__row--review");
    if (!row || !menu.dataset.card) return;
    const figure = document.querySelector(`#${menu.dataset.card} .shot[data-index="${menu.dataset.index}"]`);
    const imageId = imageOf(figure);
    row.hidden = !imageId;
    if (!imageId) return;
    row.dataset.image = imageId;
    const state = stateOf(imageId);
    for (const button of row.querySelectorAll("button")) {
      button.setAttribute("formaction", urlOf(imageId));
      button.setAttribute("aria-pressed", String(button.value === state));
    }
  }

  document.addEventListener("click", (event) => {
    if (event.target.closest?.(".shot__actions")) setTimeout(fillMenu);
    // A studio card's control: shortlist, or clear the shortlist; an owner's decision opens the image's menu.
    const cardButton = event.target.closest?.(".card .shot > .rv");
    if (cardButton && window.htmx) {
      event.preventDefault();
      const imageId = imageOf(cardButton);
      const state = stateOf(imageId);
      if (state === "approved" || state === "rejected") cardButton.parentElement.querySelector(".shot__actions")?.click();
      else send(imageId, state === "shortlisted" ? "none" : "shortlisted");
      return;
    }
    // Any other review button (a tile's, a plate's, the menu's): its image, its value.
    const button = event.target.closest?.('button[form="review-form"][name="state"]');
    if (button && send(imageOf(button), button.value)) event.preventDefault();
  });

  // Keys on a focused image (anything inside its figure, tile or plate, or its open menu).
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const state = KEYS[event.key.toLowerCase()];
    if (!state || event.target.closest?.("input, textarea, select, [contenteditable]")) return;
    const imageId = imageOf(event.target);
    if (imageId && send(imageId, state)) event.preventDefault();
  });

  // After the swap: the focus back on the same element of the new markup, and the open menu up to date.
  document.addEventListener("htmx:afterSettle", () => {
    fillMenu();
    if (!focusBack) return;
    const { element, selector } = focusBack;
    focusBack = null;
    if (element?.isConnected && document.activeElement === element) return;
    if (selector) document.querySelector(selector)?.focus({ preventScroll: true });
  });

  // A refusal (a member approving, or undoing an owner's decision): its words, for a few seconds.
  let hideTimer = null;
  document.addEventListener("htmx:responseError", (event) => {
    const path = event.detail.requestConfig?.path ?? "";
    const toast = document.getElementById("review-feedback");
    if (!toast || !/\/images\/\d+\/review\/$/.test(path)) return;
    focusBack = null;
    toast.textContent = event.detail.xhr.responseText || "The review state was not changed.";
    clearTimeout(hideTimer);
    hideTimer = setTimeout(() => { toast.textContent = ""; }, 6000);
  });
})();
