// Review in place: an image's state (☆ shortlisted, ✓ approved, ✕ rejected) from its control on a studio card, a
// library tile or the task page, from the image menu, or by key on a focused image: S shortlist, A approve,
// R reject, 0 clear. Every button works without this file (it submits the page's #review-form); here the change
// goes through htmx, which swaps the studio's card (its version then matches the live refresh's) or the image's
// control, and the keyboard focus is put back where it was. The server checks the role: a refusal is shown.
(() => {
  if (window.mjReview) return;
  window.mjReview = true;
  const KEYS = { s: "shortlisted", a: "approved", r: "rejected", 0: "none" };
  let focusBack = null;

  const control = (imageId) => document.getElementById(`rv${imageId}`);
  const stateOf = (imageId) => (control(imageId)?.className.match(/\brv--(\w+)/) ?? [])[1] ?? "none";

  function send(imageId, state) {
    const url = control(imageId)?.dataset.url;
    if (!url || !window.htmx) return;
    const card = control(imageId).closest(".card");
    const active = document.activeElement;
    focusBack = active && active !== document.body ? {
      element: active,
      id: active.id,
      image: active.closest("[data-image]")?.dataset.image,
      className: active.classList[0],
    } : null;
    htmx.ajax("POST", url, {
      source: document.body, // the CSRF header comes from <body hx-headers>
      target: card ? `#${card.id}` : `#rv${imageId}`,
      swap: "outerHTML",
      values: { state },
    });
  }

  // The image menu's row, for the image it is open for (studio.js fills the rest of the menu in on the same click).
  function fillMenu() {
    const menu = document.getElementById("image-menu");
    const row = menu?.querySelector(".menu__row--review");
    if (!row || !menu.dataset.card) return;
    const figure = document.querySelector(`#${menu.dataset.card} .shot[data-index="${menu.dataset.index}"]`);
    const imageId = figure?.dataset.image;
    row.hidden = !imageId || !control(imageId);
    if (row.hidden) return;
    row.dataset.image = imageId;
    const state = stateOf(imageId);
    for (const button of row.querySelectorAll("button")) {
      button.setAttribute("formaction", control(imageId).dataset.url);
      button.setAttribute("aria-pressed", String(button.value === state));
    }
  }
  document.addEventListener("click", (event) => {
    if (event.target.closest?.(".shot__actions")) setTimeout(fillMenu);
  });

  // A click on any review button: its image (the control's figure, or the menu's), its value.
  document.addEventListener("click", (event) => {
    const button = event.target.closest?.('button[form="review-form"][name="state"]');
    if (!button || !window.htmx) return;
    const imageId = button.closest("[data-image]")?.dataset.image;
    if (!imageId || !control(imageId)) return; // no control on this page: the plain form does it
    event.preventDefault();
    send(imageId, button.value);
  });

  // Keys on a focused image (anything inside its card figure, tile or plate, or its open menu).
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const state = KEYS[event.key.toLowerCase()];
    if (!state || event.target.closest?.("input, textarea, select, [contenteditable]")) return;
    const imageId = event.target.closest?.("[data-image]")?.dataset.image;
    if (!imageId || !control(imageId)) return;
    event.preventDefault();
    send(imageId, state);
  });

  // After the swap: the focus back on the same element of the new markup, and the open menu up to date.
  document.addEventListener("htmx:afterSettle", () => {
    fillMenu();
    if (!focusBack) return;
    const { element, id, image, className } = focusBack;
    focusBack = null;
    if (element.isConnected && document.activeElement === element) return;
    const again = (id && document.getElementById(id)) || document.querySelector(`[data-image="${image}"] .${className}`);
    again?.focus({ preventScroll: true });
  });

  // A refusal (a member approving, an owner's decision a member tries to undo): its words, for a few seconds.
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
