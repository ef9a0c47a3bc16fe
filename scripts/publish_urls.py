"""The package's public addresses, from startos/publish.json (the one place a publisher sets
them) into the StartOS 0.3.5 manifest.yaml; the 0.4 package reads the file itself.

    python scripts/publish_urls.py --write   # copy them into manifest.yaml
    python scripts/publish_urls.py --check   # exit 1 if manifest.yaml differs or any is a
                                             # placeholder (the reserved .invalid domain)

Without an option it only warns: a placeholder is printed to stderr, loudly, and it exits 0.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
PUBLISH = REPO / "startos" / "publish.json"
MANIFEST = REPO / "manifest.yaml"
# manifest.yaml key <- publish.json key
YAML_KEYS = {
    "wrapper-repo": "packageRepo",
    "upstream-repo": "upstreamRepo",
    "support-site": "supportSite",
    "marketing-site": "marketingUrl",
}


def published() -> dict[str, str]:
    data = json.loads(PUBLISH.read_text())
    return {key: data[key] for key in YAML_KEYS.values()}


def placeholders(urls: dict[str, str]) -> list[str]:
    return [key for key, url in urls.items() if urlsplit(url).hostname.endswith(".invalid")]


def with_urls(manifest: str, urls: dict[str, str]) -> str:
    for yaml_key, key in YAML_KEYS.items():
        line = re.compile(rf"^{yaml_key}:.*$", re.MULTILINE)
        if not line.search(manifest):
            raise SystemExit(f"{MANIFEST.name}: no '{yaml_key}:' line to set")
        manifest = line.sub(f'{yaml_key}: "{urls[key]}"', manifest, count=1)
    return manifest


def main(argv: list[str]) -> int:
    urls = published()
    manifest = MANIFEST.read_text()
    wanted = with_urls(manifest, urls)
    if "--write" in argv and wanted != manifest:
        MANIFEST.write_text(wanted)
        manifest = wanted
    missing = placeholders(urls)
    if missing:
        print(
            f"WARNING: placeholder addresses in {PUBLISH.relative_to(REPO)} "
            f"({', '.join(missing)}): the package names no real home. Set them before "
            "publishing a release.",
            file=sys.stderr,
        )
    if "--check" in argv:
        if wanted != manifest:
            print(
                f"{MANIFEST.name} differs from {PUBLISH.relative_to(REPO)}: run "
                "`python scripts/publish_urls.py --write`.",
                file=sys.stderr,
            )
            return 1
        return 1 if missing else 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
