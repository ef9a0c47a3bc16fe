"""Two builds of the Dockerfile at once on a fresh image cache, then a variant: the variant must
still share every layer but migrations/ with the first build. Unlocked, each concurrent build ran
every step and cached its own layers (a RUN step does not give the same bytes twice), and the
variant continued from the other chain: test_image's "rebuilt more than migrations/" check failed
whenever two image test modules built at once. scripts/build-image.sh now builds one at a time.
Minutes of cold builds, so `slow` (run with -m slow)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from tests import image_tools
from tests.image_tools import (
    REPO,
    build_image,
    image_layers,
    missing_tools,
    tools_required,
    variant_context,
)

image_tools_present = tools_required(missing_tools())
pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.timeout(1800)]

NINE = next((REPO / "migrations").glob("0009_*.sql"))


def test_concurrent_cold_builds_leave_one_chain_a_variant_reuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("KEYSMITH_IMAGE_CACHE", str(cache))
    image_tools._oci_settings.cache_clear()  # the settings are read once per process
    try:
        concurrent_builds_then_a_variant(tmp_path)
    finally:
        image_tools._oci_settings.cache_clear()
        shutil.rmtree(cache, ignore_errors=True)


def concurrent_builds_then_a_variant(tmp_path: Path) -> None:
    first = variant_context(tmp_path / "first", {})
    second = shutil.copytree(first, tmp_path / "second")
    variant = shutil.copytree(first, tmp_path / "variant")
    (variant / "migrations" / NINE.name).write_bytes(NINE.read_bytes().replace(b"\n", b"\r\n"))
    tags = {name: f"localhost/keysmith-cache-test:{name}" for name in ("first", "second", "b")}
    errors: list[BaseException] = []

    def build(tag: str, context: Path) -> None:
        try:
            build_image(tag, context)
        except BaseException as error:  # reported below, from the test's own thread
            errors.append(error)

    threads = [
        threading.Thread(target=build, args=(tags[name], context))
        for name, context in (("first", first), ("second", second))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    build_image(tags["b"], variant)
    first_layers, b_layers = image_layers(tags["first"]), image_layers(tags["b"])
    assert image_layers(tags["second"]) == first_layers, "the two builds cached two chains"
    assert b_layers[:-1] == first_layers[:-1], "the variant rebuilt more than migrations/"
    assert b_layers[-1] != first_layers[-1]
