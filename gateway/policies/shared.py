"""What the handlers of one chain share inside the process.

Passed to every handler as `shared`; it outlives a policy reload so that
standings survive it. Secrets here never leave the process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.signals.suspicion import Standings


@dataclass(slots=True)
class Shared:
    standings: Standings = field(default_factory=Standings)
    # Deployment secret for the output watermark (keyed per identity by the
    # handler). Empty means "not configured": the handler derives none.
    watermark_secret: bytes = b""
