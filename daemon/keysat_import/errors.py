"""The import's one refusal: raised before anything is written to the Keysmith database."""

from __future__ import annotations


class Refused(Exception):
    """What the import did not understand or would not overwrite. `str(e)` names it; the
    caller adds that nothing was written."""
