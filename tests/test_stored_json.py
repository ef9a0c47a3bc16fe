"""A stored JSON value too deep to show is refused with one reason, however deep the stack
of the code reading it (a handler behind fewer or more layers), so its row is warned about
once, not once per route."""

from __future__ import annotations

import sys

import pytest

from daemon.licensing import inputs

# Deep enough to fail json.loads near the recursion limit, shallow enough to decode at the top.
DEEP = "[" * 975 + "]" * 975


def _reason(raw: str) -> str:
    with pytest.raises(ValueError) as refused:
        inputs.stored_json(raw)
    return str(refused.value)


def _reason_from_depth(frames: int) -> str:
    return _reason_from_depth(frames - 1) if frames else _reason(DEEP)


def test_too_deep_has_one_reason_at_any_stack_depth():
    near_the_limit = _reason_from_depth(sys.getrecursionlimit() - 150)
    at_the_top = _reason(DEEP)
    assert at_the_top == near_the_limit == "it nests more than 32 levels deep"
