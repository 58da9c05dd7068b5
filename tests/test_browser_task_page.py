"""The task page in real Chromium: walk a lineage's tree up to the root and back, compare two images, export the
lineage and open the bundle's page offline."""

from __future__ import annotations

import json
import re
import zipfile
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from sandbox import images as sandbox_images
from sandbox.palette import scene_for
from tests.test_browser_studio import watch_errors
from tests.test_task_page import add_images

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PROMPT = "a lighthouse on a cliff at dusk, long exposure, teal and amber"


@pytest.fixture
def lineage(make_task, bob):
    """Three levels, drawn by the sandbox as Apiframe would: imagine → vary (strong) of image 2 → upscale of
    image 3, and a pan right of the imagine's image 3 beside the vary."""
    scene = scene_for(PROMPT)
    grid = sandbox_images.imagine(scene, sandbox_images.size_for((3, 2)), seed=7)
    varied = [sandbox_images.vary(grid[1], seed=10 + n, strong=True) for n in range(4)]
    upscaled = sandbox_images.upscale(varied[2], seed=20, creative=True)
    panned = [sandbox_images.pan(grid[2], scene, salt=30 + n, direction="right") for n in range(4)]

    def png(pictures) -> list[bytes]:
        return [sandbox_images.to_png(p.image) for p in pictures]

    start = timezone.now() - timedelta(hours=3)

    def times(minutes: int) -> dict:
        at = start + timedelta(minutes=minutes)
        return {
            "status": "finished",
            "created_at": at,
            "submitted_at": at + timedelta(seconds=1),
            "started_at": at + timedelta(seconds=3),
            "finished_at": at + timedelta(seconds=41),
        }

    root = make_task(upstream_id="af-1", credits=4, **times(0))
    root.prompt.text, root.prompt.aspect_ratio = PROMPT, "3:2"
    root.prompt.save()
    vary = make_task(
        user=bob,
        action="vary",
        option="strong",
        parent=root,
        parent_index=2,
        upstream_id="af-2",
        credits=4,
        **times(5),
    )
    upscale = make_task(
        action="upscale", option="creative", parent=vary, parent_index=3, upstream_id="af-3", credits=2, **times(9)
    )
    pan = make_task(
        action="pan", option="right", parent=root, parent_index=3, upstream_id="af-4", credits=4, **times(12)
    )
    add_images(root, pngs=png(grid))
    add_images(vary, pngs=png(varied))
    add_images(upscale, pngs=png([upscaled]))
    add_images(pan, pngs=png(panned))
    return {"root": root, "vary": vary, "upscale": upscale, "pan": pan}


def log_in(page: Page, base: str, path: str) -> None:
    page.goto(f"{base}{path}")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pw-alice")
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(f"{base}{path}")


def all_images_loaded(page: Page, selector: str) -> None:
    page.wait_for_function(
        "sel => { const imgs = [...document.querySelectorAll(sel)];"
        " return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0); }",
        arg=selector,
        timeout=10_000,
    )


def current_node(page: Page):
    return page.locator('.tree a[aria-current="page"]')


def test_walk_the_tree_compare_and_export(page: Page, live_server, lineage, artifacts, tmp_path):
    errors = watch_errors(page, [])
    root, vary, upscale, pan = (lineage[k] for k in ("root", "vary", "upscale", "pan"))
    base = live_server.url
    log_in(page, base, f"/tasks/{upscale.pk}/")
    tree = page.get_by_role("complementary", name="Lineage")
    expect(tree.get_by_role("listitem")).to_have_count(4)
    expect(current_node(page)).to_contain_text("Upscale (creative) of image 3")
    expect(tree).to_contain_text("This image took 3 tasks / 10 credits")
    all_images_loaded(page, ".plate img, .node__thumb")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=artifacts / "task-page-1280.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artifacts / "task-page-390.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})

    # Up the tree to the root, one parent at a time, then back down.
    tree.get_by_role("link", name="Vary (strong) of image 2").click()
    expect(page).to_have_url(f"{base}/tasks/{vary.pk}/")
    expect(current_node(page)).to_contain_text("Vary (strong) of image 2")
    all_images_loaded(page, ".plate img, .node__thumb")
    page.screenshot(path=artifacts / "task-page-grid-1280.png", full_page=True)
    page.get_by_role("complementary", name="Lineage").get_by_role("link", name="Imagine").click()
    expect(page).to_have_url(f"{base}/tasks/{root.pk}/")
    expect(current_node(page)).to_contain_text("Imagine")
    expect(page.locator(".facts")).to_contain_text("Nothing: this is the root")
    expect(page.locator(".facts")).to_contain_text("Pan right of image 3")  # made from it, besides the vary
    page.get_by_role("complementary", name="Lineage").get_by_role("link", name="Vary (strong) of image 2").click()
    expect(page).to_have_url(f"{base}/tasks/{vary.pk}/")
    page.get_by_role("complementary", name="Lineage").get_by_role("link", name="Upscale (creative)").click()
    expect(page).to_have_url(f"{base}/tasks/{upscale.pk}/")
    page.go_back()
    expect(page).to_have_url(f"{base}/tasks/{vary.pk}/")

    # Two siblings from the vary, side by side.
    page.get_by_label("Compare image 1", exact=True).check()
    page.get_by_label("Compare image 4", exact=True).check()
    expect(page.locator("#compare-hint")).to_have_text("2 images ticked: ready to compare.")
    page.get_by_role("button", name="Compare selected").click()
    expect(page).to_have_url(re.compile(r"/compare/\?images=\d+&images=\d+$"))
    expect(page.locator(".compare__pane")).to_have_count(2)
    all_images_loaded(page, ".compare__frame img")
    boxes = [page.locator(".compare__frame").nth(n).bounding_box() for n in range(2)]
    assert boxes[0]["height"] == boxes[1]["height"] and boxes[0]["y"] == boxes[1]["y"]  # lined up
    assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"]  # side by side
    page.screenshot(path=artifacts / "compare-1280.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=artifacts / "compare-390.png", full_page=True)
    page.set_viewport_size({"width": 1280, "height": 900})
    page.keyboard.press("Tab")  # keyboard: the panes take focus in order
    page.get_by_role("link", name="Actual pixels").click()
    expect(page.locator(".compare--actual")).to_have_count(1)
    page.go_back()
    page.go_back()

    # Export the lineage, open the zip, and its page offline.
    with page.expect_download() as download_info:
        page.locator(".taskpage__actions").get_by_role("link", name="Export lineage").click()
    download = download_info.value
    assert download.suggested_filename == f"a-lighthouse-on-a-cliff-at-dusk-long-lineage-{root.pk}.zip"
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    folder = tmp_path / "bundle"
    with zipfile.ZipFile(path) as bundle:
        bundle.extractall(folder)
    metadata = json.loads((folder / "metadata.json").read_text())
    assert sorted(t["id"] for t in metadata["tasks"]) == sorted(t.pk for t in lineage.values())
    assert len(list((folder / "images").iterdir())) == 13

    offline = page.context.browser.new_context(offline=True)
    try:
        bundle_page = offline.new_page()
        bundle_page.goto((folder / "index.html").as_uri())
        expect(bundle_page.locator("li[data-task]")).to_have_count(4)
        all_images_loaded(bundle_page, "img")
        expect(bundle_page.locator("img")).to_have_count(13)
        pan_node = bundle_page.locator(f'li[data-task="{root.pk}"] > ul > li[data-task="{pan.pk}"]')
        expect(pan_node).to_contain_text("Pan right of image 3")
        bundle_page.screenshot(path=artifacts / "export-index-1280.png", full_page=True)
    finally:
        offline.close()
    assert errors == []


def test_a_long_chain_stays_readable_and_opens_at_the_current_task(page: Page, live_server, make_task):
    task = make_task(status="finished")
    for _ in range(60):
        task = make_task(status="finished", action="vary", option="subtle", parent=task, parent_index=1)
    log_in(page, live_server.url, f"/tasks/{task.pk}/")
    current = page.locator(".node--current")
    expect(current).to_be_in_viewport()  # the panel scrolled to it
    assert current.bounding_box()["width"] > 200  # indentation stops: the 61st node is as wide as the 5th
