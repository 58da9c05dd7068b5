// The task page and the compare page. Everything works without this file; it only adds comfort.

// Task page: the compare bar counts the images ticked (the same image ticked twice, as a grid image and as a
// node of the tree, counts once) and says when the choice can be compared.
function updateCompareBar() {
  const form = document.getElementById("compare-form");
  const hint = document.getElementById("compare-hint");
  if (!form || !hint) return;
  const picked = new Set([...form.elements].filter((el) => el.name === "images" && el.checked).map((el) => el.value));
  const count = picked.size;
  form.classList.toggle("comparebar--ready", count >= 2 && count <= 4);
  if (count === 0) hint.textContent = "Tick 2 to 4 images, here or in the lineage, to see them side by side.";
  else if (count === 1) hint.textContent = "1 image ticked: tick at least one more.";
  else if (count <= 4) hint.textContent = `${count} images ticked: ready to compare.`;
  else hint.textContent = `${count} images ticked: four at most can be compared.`;
}
document.addEventListener("change", (event) => {
  if (event.target.name === "images") updateCompareBar();
});
updateCompareBar(); // a page restored by Back keeps its ticks

// Compare at actual pixels: scrolling one image scrolls the others to the same spot, so details line up. The
// image under the pointer or with the keyboard focus leads; the others follow.
const frames = [...document.querySelectorAll("[data-sync-scroll] .compare__frame")];
let leader = null;
for (const frame of frames) {
  frame.addEventListener("pointerenter", () => { leader = frame; });
  frame.addEventListener("focus", () => { leader = frame; });
  frame.addEventListener("scroll", () => {
    if (leader !== frame) return;
    for (const other of frames) {
      if (other !== frame) other.scrollTo(frame.scrollLeft, frame.scrollTop);
    }
  }, { passive: true });
}

// Task page: in a family too tall for its panel, the panel opens scrolled to the current task.
const current = document.querySelector(".lineage .node--current");
const lineage = current?.closest(".lineage");
if (current && lineage && lineage.scrollHeight > lineage.clientHeight) {
  const offset = current.getBoundingClientRect().top - lineage.getBoundingClientRect().top;
  if (offset > lineage.clientHeight - 80) lineage.scrollTop += offset - lineage.clientHeight / 3;
}
