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
// missed). Swapping it anyway would be work for nothing, and would take focus from a button in it: skip it.
document.addEventListener("htmx:oobBeforeSwap", (event) => {
  const incoming = event.detail.fragment.firstElementChild;
  const current = event.detail.target;
  const versioned = incoming?.classList.contains("card") || incoming?.id === "queue-state"; // the queue's line too
  if (versioned && incoming.dataset.version === current.dataset.version) {
    event.detail.shouldSwap = false;
  }
});

// One action menu serves every image of the studio (studio.html#image-menu). An image's "Actions" button
// opens that image's menu page when there is no JS; here it fills the one menu in for that image and opens it.
// The menu sits outside the cards, so a live update of the card never closes it.
document.addEventListener("click", (event) => {
  const opener = event.target.closest?.(".shot__actions");
  const menu = document.getElementById("image-menu");
  if (!opener || !menu?.popover) return; // no shared menu here (the task page): follow the link
  event.preventDefault();
  openImageMenu(menu, opener);
});

// "Collections…" in the menu: the image's collections control, in the page's one dialog (collections.js opens it
// once htmx has swapped the control in); without JS it is the control's own page.
document.addEventListener("click", (event) => {
  const link = event.target.closest?.(".menu__collect");
  if (!link || !window.htmx || !document.getElementById("collect-body")) return;
  event.preventDefault();
  document.getElementById("image-menu")?.hidePopover();
  htmx.ajax("GET", link.getAttribute("href"), { target: "#collect-body", swap: "innerHTML" });
});

function openImageMenu(menu, opener) {
  const shots = opener.form; // the card's images: data-act says where to post, data-kind which rows apply
  const card = opener.closest(".card");
  const figure = opener.closest(".shot");
  const index = opener.value;
  const form = menu.querySelector("form");
  form.setAttribute("action", shots.dataset.act);
  form.elements.namedItem("index").value = index;
  // A fresh key each time the menu opens: a double click (or a retried POST) makes one task, a new choice another.
  form.elements.namedItem("idempotency_key").value = newKey();
  const zoom = form.elements.namedItem("zoom_factor");
  if (zoom) zoom.value = zoom.defaultValue;
  for (const row of form.querySelectorAll("[data-valid-on]")) {
    row.hidden = !row.dataset.validOn.split(" ").includes(shots.dataset.kind);
  }
  for (const button of form.querySelectorAll("button[data-name]")) {
    button.setAttribute("aria-label", `${button.dataset.name}, image ${index}`);
  }
  const error = form.querySelector(".menu__error"); // task_act's refusals are swapped in here, by this id
  error.id = `${card.id}-${index}-feedback`;
  error.textContent = "";
  const image = figure.querySelector(".shot__link img");
  const thumb = menu.querySelector(".menu__head img");
  for (const name of ["src", "width", "height"]) thumb.setAttribute(name, image.getAttribute(name));
  menu.querySelector(".menu__index").textContent = index;
  menu.querySelector(".menu__download").href = `${figure.querySelector(".shot__link").href}?download=1`;
  menu.querySelector(".menu__collect").href = figure.querySelector(".shot__link").href.replace(/full\/$/, "collections/");
  menu.querySelector(".menu__flag").href = figure.querySelector(".shot__link").href.replace(/full\/$/, "flag/");
  menu.querySelector(".menu__prompt").textContent = card.querySelector(".card__prompt").textContent;
  menu.dataset.card = card.id; // to give focus back, even to a card swapped meanwhile
  menu.dataset.index = index;
  if (!menu.matches(":popover-open")) menu.showPopover({ source: opener });
  form.querySelector(".menu__row:not([hidden]) button").focus();
}

// Closed (Esc, a click outside, ✕, or an action sent), the menu gives focus back to the image's button.
document.addEventListener(
  "toggle",
  (event) => {
    const menu = event.target;
    if (menu.id !== "image-menu" || event.newState !== "closed") return;
    const focused = document.activeElement;
    if (focused && focused !== document.body && !menu.contains(focused)) return; // it is where the user put it
    const card = document.getElementById(menu.dataset.card ?? "");
    card?.querySelector(`.shot__actions[value="${menu.dataset.index}"]`)?.focus({ preventScroll: true });
  },
  true,
);

// The menu's form posts where its action says: it changes with each image.
document.addEventListener("htmx:configRequest", (event) => {
  if (event.detail.elt.id === "image-menu-form") event.detail.path = event.detail.elt.getAttribute("action");
});

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // crypto.randomUUID needs a secure context; a studio served over plain http on a LAN gets a v4 UUID anyway.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

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

// Live push: a stream that failed outright (a 5xx, a restarting server) is opened again by htmx from its
// sse-connect URL, which carries no Last-Event-ID: keep that URL's position at the last change received.
document.addEventListener("htmx:sseMessage", (event) => {
  const id = event.detail?.lastEventId;
  const live = event.target.closest?.("[sse-connect]");
  if (!id || !live) return;
  const url = new URL(live.getAttribute("sse-connect"), location.href);
  url.searchParams.set("after", id);
  live.setAttribute("sse-connect", url.pathname + url.search);
});

// Live push: a stream whose user may no longer see this page (logged out, removed from the team, or the session
// moved to another team) ends with a "reload" event. Closed at once, it is not reopened into the same refusal; the
// page loads itself again: the login page, or the studio of the team the user is in now.
document.addEventListener("htmx:sseOpen", (event) => {
  event.detail.source.addEventListener("reload", reloadPage); // once per source, however often it reconnects
});

function reloadPage(event) {
  event.target.close();
  location.reload();
}
