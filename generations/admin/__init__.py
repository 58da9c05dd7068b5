"""The Django admin, by area: staff moderate (the review queue's bulk actions), run operations (stuck work, webhook
replays) and read the audit trail. Writes go through the services, each act audited; the lists stay fast at
100,000 rows (a fixed number of queries per page, exact-id and indexed prompt search, no full counts).

Where each model's admin lives:
- `base`: what they share (ReadOnlyAdmin, CappedPaginator, links, thumbnails, the task search, the reason page)
- `tasks`: Prompt, Task (its images and child tasks inline), StuckTask; refresh, retry mirror, fail
- `images`: Image
- `moderation`: the review queue's filter and bulk Hide / Restore / Clear flags; Flag, AuditEntry, BlockedTerm
- `teams`: Team (its memberships inline, audited), Membership
- `webhooks`: WebhookDelivery and its Replay
- `logins`: django-axes' AccessAttempt, its "Clean up expired attempts" mended
"""

from __future__ import annotations

# Imported for their @admin.register: Django's autodiscovery imports only this package.
from generations.admin import images, logins, moderation, tasks, teams, webhooks  # noqa: F401
