"""The admin: read-only history, usage and who looked at what.

- ``conversations``: conversations with usage at a glance, audited transcripts, exports
  and the usage dashboard (``usage``, ``charts``);
- ``live_replies``: replies generating now on any worker, with Stop;
- ``people``: ending a person's sessions;
- ``access_log``: the audit log of transcript reads and exports, and of sign-outs;
- ``budgets``: daily budgets;
- ``feedback``: people's ratings of replies, and exports of what they rate;
- ``share_links``: every person's share links, and revoking them;
- ``prompts``: every person's saved prompts, and publishing them to everyone.
"""

from chat.admin import (
    access_log,
    budgets,
    conversations,
    feedback,
    live_replies,
    people,
    prompts,
    share_links,
)

__all__ = [
    "access_log",
    "budgets",
    "conversations",
    "feedback",
    "live_replies",
    "people",
    "prompts",
    "share_links",
]
