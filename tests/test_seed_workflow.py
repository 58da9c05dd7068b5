"""The seed's own Python workflow ("Ví dụ workflow đầy đủ, Python (requests)"), run against the sandbox.

Written as the tutorial writes it: plain `requests`, the same paths and JSON fields, `Authorization: <key>`
without "Bearer", a 2-second polling loop. Only the base URL and the key are the sandbox's. If the sandbox
and the tutorial ever disagree, this test is the one that says so.
"""

from __future__ import annotations

import os
import time

import pytest
import requests


# task_seconds=1.0: the first poll of each phase (right after submitting) still sees the task unfinished,
# the next one, 2 s later, sees it finished; the whole workflow stays around 4-5 s.
@pytest.mark.sandbox(task_seconds=1.0)
def test_the_seed_python_workflow_runs_against_the_sandbox(sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APIFRAME_API_KEY", sandbox.engine.config.api_key)
    base = sandbox.url  # stands for https://api.apiframe.ai
    statuses: dict[str, list[str]] = {"imagine": [], "pan": []}

    # --- From the seed, verbatim apart from `base`, a timeout and the recorded statuses ------------------
    API_KEY = os.environ["APIFRAME_API_KEY"]
    HEADERS = {"Content-Type": "application/json", "Authorization": API_KEY}

    def post(url, payload):
        return requests.post(url, headers=HEADERS, json=payload, timeout=10).json()  # timeout: ours

    # 1) Imagine (turbo)
    imagine = post(
        f"{base}/pro/imagine",
        {"prompt": "Ảnh sản phẩm tối giản: ly gốm trên nền vải linen, ánh sáng tự nhiên", "mode": "turbo"},
    )
    task_id = imagine["task_id"]

    # 2) Poll
    for _ in range(50):
        data = post(f"{base}/fetch", {"task_id": task_id})
        statuses["imagine"].append(data.get("status"))
        if data.get("status") == "finished":
            break
        if data.get("status") == "failed":
            raise RuntimeError("Generation failed")
        time.sleep(2)

    # 3) Pan sang phải ảnh #2
    pan = post(f"{base}/pro/pan", {"parent_task_id": task_id, "index": "2", "type": "right"})
    pan_id = pan["task_id"]

    # 4) Poll kết quả pan
    out = None
    for _ in range(50):
        out = post(f"{base}/fetch", {"task_id": pan_id})
        statuses["pan"].append(out.get("status"))
        if out.get("status") == "finished":
            print(out)
            break
        if out.get("status") == "failed":
            raise RuntimeError("Pan failed")
        time.sleep(2)
    # --- End of the seed -------------------------------------------------------------------------------

    # Each phase polled at least once before the task finished, then saw it finish.
    for phase, seen in statuses.items():
        assert seen[-1] == "finished", (phase, seen)
        assert len(seen) >= 2, (phase, seen)
        assert set(seen[:-1]) <= {"pending", "staged", "starting", "processing", "retry", "retrying"}, seen
    assert data["task_id"] == task_id
    assert len(data["image_urls"]) == 4
    assert data["original_image_url"]
    assert out is not None
    assert out["task_id"] == pan_id != task_id
    assert len(out["image_urls"]) == 4
    assert not set(out["image_urls"]) & set(data["image_urls"])
    # The images behind the URLs are real and reachable the way the seed's reader would fetch them.
    image = requests.get(out["image_urls"][1], timeout=10)
    assert image.status_code == 200
    assert image.content.startswith(b"\x89PNG")
