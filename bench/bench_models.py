"""Benchmark: one validate request decoded and one answer encoded, three ways, in process.

The choice of model library for the API contract (issue 13): msgspec (the one chosen) and
pydantic v2 (measured only if it is installed; it is not a dependency), next to the floor of
stdlib json with no checks at all. The request and answer are the real models of
`daemon.licensing` for msgspec; pydantic gets the same fields and bounds, `extra="forbid"`,
strict. The end-to-end comparison with the code before is `bench/bench_validate.py`.

    .venv/bin/python bench/bench_models.py            # min of 5 x 100,000
    .venv/bin/python bench/bench_models.py --quick    # min of 3 x 10,000 (CI smoke)
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from daemon.licensing import answers, models, wire  # noqa: E402  (after the path fix)

BODY = json.dumps(
    {"key": "LIC1-" + "A" * 240, "product_slug": "acme-pro", "fingerprint": "f" * 64}
).encode()
ANSWER = {
    "license_id": "0f8e2a4c-1111-4222-8333-444455556666",
    "product_id": "0f8e2a4c-1111-4222-8333-444455556667",
    "product_slug": "acme-pro",
    "issued_at": "2026-01-01T00:00:00Z",
    "expires_at": None,
    "grace_until": None,
    "in_grace_period": False,
    "is_trial": False,
    "entitlements": ["sync", "export"],
    "status": "active",
    "machine_id": "0f8e2a4c-1111-4222-8333-444455556668",
    "max_machines": 3,
}


def floor() -> bytes:
    json.loads(BODY.decode("utf-8"))
    return json.dumps({"ok": True, **ANSWER}).encode()


def with_msgspec() -> bytes:
    wire.decode(models.ValidateRequest, BODY)
    return wire.encode(answers.Valid(**ANSWER))


def pydantic_pair():
    import pydantic

    class Request(pydantic.BaseModel):
        model_config = pydantic.ConfigDict(extra="forbid", strict=True)
        key: str = pydantic.Field(max_length=64 * 1024)
        product_slug: str | None = pydantic.Field(None, max_length=64)
        fingerprint: str | None = pydantic.Field(None, max_length=512)
        hostname: str | None = pydantic.Field(None, max_length=255)
        platform: str | None = pydantic.Field(None, max_length=255)

    class Answer(pydantic.BaseModel):
        ok: bool = True
        license_id: str
        product_id: str
        product_slug: str
        issued_at: str
        expires_at: str | None
        grace_until: str | None
        in_grace_period: bool
        is_trial: bool
        entitlements: list[str]
        status: str
        machine_id: str | None
        max_machines: int

    def run() -> bytes:
        Request.model_validate_json(BODY)
        return Answer(**ANSWER).model_dump_json().encode()

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    number, repeat = (10_000, 3) if args.quick else (100_000, 5)
    contenders = [("stdlib json, no checks (floor)", floor), ("msgspec (chosen)", with_msgspec)]
    try:
        contenders.append(("pydantic v2", pydantic_pair()))
    except ImportError:
        print("pydantic is not installed: its row is left out")
    for name, run in contenders:
        seconds = min(timeit.repeat(run, number=number, repeat=repeat)) / number
        print(f"{name:32s} {seconds * 1e6:6.2f} us per request decoded + answer encoded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
