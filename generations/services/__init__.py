"""Every write to the studio's records goes through these modules (keyword-only, typed functions), one per area:

- `teams`: teams, memberships, the demo logins;
- `submitting`: creating tasks (imagine, actions, retry) and sending them to Apiframe;
- `applying`: `task_apply_state`, the one function that applies an Apiframe task object (webhook, poll or
  fetch alike), idempotent and monotonic; and the webhook log;
- `queue`: the fair queue: at most APIFRAME_CONCURRENCY tasks upstream, members taking turns, places in line,
  pausing a team's queue;
- `polling`: the poller's rounds (deadlines, fetch-many for quiet tasks, lost mirrors);
- `mirroring`: downloading, verifying and storing images;
- `collections`: a team's collections and the images in them (also filled by a task the composer sent there).
"""
