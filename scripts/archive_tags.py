"""Rewrite a docker-archive's tags from podman's "localhost/<name>" to the bare "<name>".

    python3 scripts/archive_tags.py docker-images/x86_64.tar

podman names an image built without a registry "localhost/start9/keysmith/main:<version>";
`docker save`, and the image check of `start-sdk verify`, use "start9/keysmith/main:<version>".
Only manifest.json and repositories change; every layer is copied byte for byte. GNU tar's
--delete/--append cannot be used: they fail on podman's archives ("Skipping to next header").
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
from pathlib import Path

REWRITTEN = ("manifest.json", "repositories")


def rewrite(archive: Path) -> None:
    staged = archive.with_name(archive.name + ".retag")
    with (
        tarfile.open(archive) as source,
        tarfile.open(staged, "w", format=tarfile.GNU_FORMAT) as out,
    ):
        for member in source:
            if member.name in REWRITTEN:
                data = source.extractfile(member).read().replace(b'"localhost/', b'"')
                member.size = len(data)
                out.addfile(member, io.BytesIO(data))
            else:
                out.addfile(member, source.extractfile(member) if member.isfile() else None)
    os.replace(staged, archive)


if __name__ == "__main__":
    for name in sys.argv[1:]:
        rewrite(Path(name))
