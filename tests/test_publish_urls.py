"""The package's public addresses: no invented repository, one place a publisher sets them
(startos/publish.json), and a build with placeholders says so."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.startos.driver import build_bundle, missing_node

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
import publish_urls  # noqa: E402

MANIFEST_YAML = yaml.safe_load((REPO / "manifest.yaml").read_text())
URL = re.compile(r"https?://[^\s)\"'>`]+")
# Repositories that exist and that the texts name for what they are (the StartOS sources).
KNOWN_ELSEWHERE = ("https://github.com/Start9Labs/start-os", "https://docs.start9.com")


def test_manifest_yaml_takes_its_addresses_from_publish_json():
    urls = publish_urls.published()
    for yaml_key, key in publish_urls.YAML_KEYS.items():
        assert MANIFEST_YAML[yaml_key] == urls[key], yaml_key


def test_the_addresses_are_placeholders_until_a_publisher_sets_them():
    # Keysmith has no public home yet: every address is under the reserved .invalid domain,
    # which resolves nowhere, rather than a guessed repository.
    urls = publish_urls.published()
    assert publish_urls.placeholders(urls) == list(urls)
    real = {key: f"https://example.org/keysmith/{key}" for key in urls}
    assert publish_urls.placeholders(real) == []
    text = (REPO / "manifest.yaml").read_text()
    rewritten = publish_urls.with_urls(text, real)
    assert yaml.safe_load(rewritten)["wrapper-repo"] == real["packageRepo"]
    assert text.count("\n") == rewritten.count("\n")


def test_no_text_names_a_repository_of_this_project_that_does_not_exist():
    texts = ["manifest.yaml", "README.md", "instructions.md", "scripts/README.md"]
    texts += [str(p.relative_to(REPO)) for p in (REPO / "startos").rglob("*.ts")]
    for name in texts:
        for url in URL.findall((REPO / name).read_text()):
            invented = not url.startswith(KNOWN_ELSEWHERE) and ".invalid/" not in url
            assert not (invented and "keysmith" in url.lower()), f"{name}: {url}"


def test_a_placeholder_check_fails_loudly():
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "publish_urls.py"), "--check"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done
    assert "WARNING: placeholder addresses in startos/publish.json" in done.stderr, done.stderr


@pytest.mark.skipif(bool(missing_node()), reason=str(missing_node()))
def test_the_bundle_carries_the_published_addresses_and_warns_about_placeholders():
    bundle = build_bundle()
    script = f"console.log(JSON.stringify(require({json.dumps(str(bundle))}).manifest))"
    done = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    manifest = json.loads(done.stdout)
    urls = publish_urls.published()
    for key in ("packageRepo", "upstreamRepo", "marketingUrl"):
        assert manifest[key] == urls[key], key
    assert "WARNING: this Keysmith package has placeholder addresses" in done.stderr, done
