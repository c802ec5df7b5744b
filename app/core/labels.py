"""The labels Nightshift puts on issues, in one place."""

from __future__ import annotations

QUEUED_LABEL = "nightshift:queued"
REJECTED_LABEL = "nightshift:rejected"
NEEDS_APPROVAL_LABEL = "nightshift:needs-approval"
URGENT_LABEL = "nightshift:urgent"
REPORT_LABEL = "nightshift:report"
