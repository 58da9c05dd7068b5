"""The task page's lineage: iterative, bounded, and in a fixed number of queries however big the family."""

from __future__ import annotations

import re
from itertools import pairwise

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from generations.models import Task
from generations.services.provenance import LINEAGE_MAX_LINES


@pytest.fixture
def lineage(make_task):
    """A chain of `depth` tasks, each made from the one before (the first is the root), created in bulk."""

    def make(depth: int) -> list[Task]:
        root = make_task(status="finished", upstream_id=f"root-{depth}")
        fields = {"team": root.team, "prompt": root.prompt, "created_by": root.created_by, "deadline": root.deadline}
        steps = [
            Task(action="vary", option="subtle", parent_index=1, root=root, status="finished", **fields)
            for _ in range(depth - 1)
        ]
        chain = [root, *Task.objects.bulk_create(steps)]
        for parent, child in pairwise(chain):
            child.parent = parent
        Task.objects.bulk_update(chain[1:], ["parent"], batch_size=500)
        return chain

    return make


def _lines(response) -> list[str]:
    return re.findall(r'<li class="tree__item[^"]*"', response.content.decode())


def _queries(client, task) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"/tasks/{task.pk}/").status_code == 200
    return len(queries)


@pytest.mark.parametrize("where", [0, 1, 500, 998, 999])
def test_every_task_of_a_thousand_deep_lineage_has_a_page(alice_client, lineage, where):
    chain = lineage(1000)
    task = chain[where]
    response = alice_client.get(f"/tasks/{task.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert len(_lines(response)) <= LINEAGE_MAX_LINES + 2  # the lines, plus what is left out, said in two
    assert f'class="node__link" href="/tasks/{task.pk}/" aria-current="page"' in body
    assert f'href="/tasks/{chain[0].pk}/"' in body  # the root, always
    if where:
        assert f'href="/tasks/{chain[where - 1].pk}/"' in body  # what it was made from
    if where < 999:
        assert f'href="/tasks/{chain[where + 1].pk}/"' in body  # what was made from it
    assert "more in this lineage" in body


def test_a_long_way_down_shows_its_first_and_last_steps(alice_client, lineage):
    chain = lineage(1000)
    body = alice_client.get(f"/tasks/{chain[-1].pk}/").content.decode()
    shown = [pk for pk in (t.pk for t in chain) if f'href="/tasks/{pk}/"' in body]
    assert shown == [chain[0].pk] + [t.pk for t in chain[-10:]]
    assert "… 989 steps on the way here …" in body
    assert "+989 more in this lineage" in body


def test_a_small_family_is_shown_whole_in_depth_first_order(alice_client, make_task):
    root = make_task(status="finished", upstream_id="r")
    first = make_task(status="finished", action="vary", option="strong", parent=root, parent_index=1)
    second = make_task(status="finished", action="pan", option="left", parent=root, parent_index=2)
    grandchild = make_task(status="finished", action="upscale", option="subtle", parent=first, parent_index=3)
    response = alice_client.get(f"/tasks/{second.pk}/")
    body = response.content.decode()
    tree = body.split('aria-labelledby="lineage-title"')[1]
    order = [int(pk) for pk in re.findall(r'<a class="node__link" href="/tasks/(\d+)/"', tree)]
    assert order == [root.pk, first.pk, grandchild.pk, second.pk]
    assert tree.count("<ul>") == 2 and "more in this lineage" not in body  # under the root, under the first


def test_the_page_costs_the_same_queries_for_a_family_of_201_as_of_1000(alice_client, lineage):
    small, big = lineage(LINEAGE_MAX_LINES + 1), lineage(1000)
    alice_client.get("/")  # the session's team, once
    assert _queries(alice_client, small[-1]) == _queries(alice_client, big[-1]) == _queries(alice_client, big[0])


def test_a_lineage_shows_only_the_teams_tasks(alice_client, lineage, charlie):
    chain = lineage(3)
    Task.objects.filter(pk=chain[1].pk).update(team=charlie.memberships.get().team)
    response = alice_client.get(f"/tasks/{chain[2].pk}/")
    assert response.status_code == 200
    aside = response.content.decode().split('aria-labelledby="lineage-title"')[1]
    assert f'href="/tasks/{chain[1].pk}/"' not in aside and f'href="/tasks/{chain[2].pk}/"' in aside
