"""The StartOS 0.4 package file, keysmith_<arch>.s9pk, as plain `make` builds it (with start-cli
when it is on PATH, else scripts/s9pk/), read back by StartOS's own reader (start-core's
S9pk.deserialize, bundled in the SDK; scripts/s9pk/inspect.mjs drives it): signature and every
hash verified, the manifest equal to the bundle's as pack fills it in, one flipped byte anywhere
refused, the layout start-cli writes, and the image inside booting the daemon to `serving`.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import struct
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.daemon_proc import free_port
from tests.image_tools import REPO, missing_tools, podman, tools_required
from tests.startos.driver import build_bundle, missing_node


def missing_squashfs() -> str | None:
    absent = [t for t in ("mksquashfs", "unsquashfs", "tar2sqfs") if shutil.which(t) is None]
    return (
        f"{', '.join(absent)} not installed (squashfs-tools squashfs-tools-ng)" if absent else None
    )


image_tools_present = tools_required(missing_tools() or missing_node() or missing_squashfs())
pytestmark = [pytest.mark.image, pytest.mark.timeout(1200)]

SDK_MK = REPO / "node_modules" / "@start9labs" / "start-sdk" / "s9pk.mk"
INSPECT = REPO / "scripts" / "s9pk" / "inspect.mjs"
LATEST = max(int(p.name[:4]) for p in (REPO / "migrations").glob("*.sql"))
MAKE_ARCH = {"x86": "x86_64", "arm": "aarch64", "riscv": "riscv64"}
HEADER = 3 + 32 + 64 + 32 + 8  # magic, pubkey, signature, root sighash, root TOC size


def make(*args: str, timeout: float = 1200) -> str:
    done = subprocess.run(
        ["make", "-C", str(REPO), "--no-print-directory", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"make {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def inspect(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(INSPECT), str(path), *args],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def extract(s9pk: Path, inner: str, dest: Path) -> Path:
    done = inspect(s9pk, "--extract", inner, str(dest))
    assert done.returncode == 0, done.stderr
    return dest


@pytest.fixture(scope="module")
def targets() -> list[str]:
    build_bundle()
    return make("-s", "print-TARGETS").split()


@pytest.fixture(scope="module")
def s9pk(targets: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Plain `make` (the default goal Start9's build workflow runs), then a private copy."""
    make()
    copy = tmp_path_factory.mktemp("s9pk") / "keysmith_x86_64.s9pk"
    shutil.copyfile(REPO / "keysmith_x86_64.s9pk", copy)
    return copy


@pytest.fixture(scope="module")
def read_back(s9pk: Path) -> dict[str, Any]:
    done = inspect(s9pk, "--json")
    assert done.returncode == 0, f"StartOS's reader refused the file: {done.stderr}"
    return json.loads(done.stdout)


def sdk_definitions(text: str) -> tuple[set[str], set[str]]:
    """The targets and variables a makefile's text defines (outside define blocks)."""
    text = re.sub(r"^define .*?^endef", "", text, flags=re.S | re.M)
    targets, variables = set(), set()
    for line in text.splitlines():
        if line.startswith(("\t", "#", ".")) or not line.strip():
            continue
        if m := re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*[:?+]?=", line):
            variables.add(m.group(1))
        elif m := re.match(r"^([^:=]+):(?!=)", line):
            targets.update(m.group(1).split())
    return targets, variables | {"SUMMARY"}


def test_makefile_keeps_every_target_and_variable_of_the_sdk_s9pk_mk(targets: list[str]) -> None:
    sdk_targets, sdk_variables = sdk_definitions(SDK_MK.read_text())
    assert {"all", "print-%", "install", "clean", "x86", "arm"} <= sdk_targets
    database = subprocess.run(
        ["make", "-C", str(REPO), "-p", "-n", "-q", "print-TARGETS"],
        capture_output=True, text=True, timeout=120, check=False,
    ).stdout  # fmt: skip
    ours_targets, ours_variables = sdk_definitions(database)
    missing = {t.replace("$(BASE_NAME)", "keysmith") for t in sdk_targets} - ours_targets
    assert not missing, f"the Makefile lacks s9pk.mk's targets {missing}"
    assert not sdk_variables - ours_variables, sdk_variables - ours_variables
    assert re.search(r"^\.DEFAULT_GOAL := all$", database, re.M)
    # The build matrix lists exactly the architectures the manifest ships (issue 19, part 4).
    bundle = json.loads(subprocess.run(
        ["node", "-e", "console.log(JSON.stringify(require('./javascript/index.js').manifest))"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    ).stdout)  # fmt: skip
    assert [MAKE_ARCH[t] for t in targets] == bundle["images"]["main"]["arch"]
    assert bundle["images"]["main"]["emulateMissingAs"] is None


def test_reader_verifies_the_file_and_reads_the_bundles_manifest(
    s9pk: Path, read_back: dict[str, Any]
) -> None:
    assert read_back["size"] == s9pk.stat().st_size
    bundle = json.loads(subprocess.run(
        ["node", "-e", "console.log(JSON.stringify(require('./javascript/index.js').manifest))"],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    ).stdout)  # fmt: skip
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "diff-index", "--quiet", "HEAD", "--"], cwd=REPO).returncode
    # What pack.rs fills in: the commit, the one architecture packed, and images now packed.
    expected = bundle | {
        "gitHash": head.stdout.strip() + ("-modified" if dirty else ""),
        "hardwareRequirements": bundle["hardwareRequirements"] | {"arch": ["x86_64"]},
        "images": {"main": bundle["images"]["main"] | {"arch": ["x86_64"], "source": "packed"}},
    }
    manifest = json.loads(inspect(s9pk, "--manifest").stdout)
    assert manifest == expected


def test_layout_is_what_start_cli_writes(s9pk: Path, read_back: dict[str, Any]) -> None:
    # serialize_toc: directories first, then by name; bodies breadth first, no gaps.
    assert [e["path"] for e in read_back["entries"]] == [
        "images/", "images/x86_64/", "images/x86_64/main.env", "images/x86_64/main.json",
        "images/x86_64/main.squashfs", "LICENSE.md", "assets.squashfs", "icon.png",
        "instructions.md", "javascript.squashfs", "manifest.json",
    ]  # fmt: skip
    data = s9pk.read_bytes()
    assert data[:3] == b"\x3b\x3b\x02"
    root_size = struct.unpack(">Q", data[HEADER - 8 : HEADER])[0]
    position, size = struct.unpack(">QQ", data[HEADER : HEADER + 16])
    assert (position, size, size) == (HEADER + 16, read_back["rootTocSize"], root_size)
    # WriteQueue: each body starts where the one before it ended, and the last ends the file.
    bodies = [(position, size), *((pos, length) for pos, length in bodies_in_order(data).values())]
    for (pos, length), (next_pos, _) in itertools.pairwise(bodies):
        assert next_pos == pos + length, bodies
    assert bodies[-1][0] + bodies[-1][1] == len(data)
    # images/<arch>/main.json and .env as pack.rs derives them from the image's config.
    tmp = s9pk.parent
    meta = json.loads(extract(s9pk, "images/x86_64/main.json", tmp / "main.json").read_text())
    env = extract(s9pk, "images/x86_64/main.env", tmp / "main.env").read_text()
    assert list(meta) == ["workdir", "user", "entrypoint", "cmd"]
    assert meta == {"workdir": "/app", "user": "root",
                    "entrypoint": ["/usr/local/bin/docker_entrypoint.sh"], "cmd": None}  # fmt: skip
    assert "KEYSMITH_DB_PATH=/data/keysmith.db" in env.split("\n") and not env.endswith("\n")
    license_md = extract(s9pk, "LICENSE.md", tmp / "LICENSE.md")
    assert license_md.read_bytes() == (REPO / "LICENSE").read_bytes()


def varint(data: bytes, i: int) -> tuple[int, int]:
    """An unsigned LEB128 varint at data[i:]: (value, index after it)."""
    value = shift = 0
    while True:
        value |= (data[i] & 0x7F) << shift
        shift, i = shift + 7, i + 1
        if data[i - 1] < 0x80:
            return value, i


def bodies_in_order(data: bytes) -> dict[str, tuple[int, int]]:
    """path -> (position, size) of every TOC and file body below the root, read from the TOCs
    breadth first: the order WriteQueue writes them in."""
    found: dict[str, tuple[int, int]] = {}
    position, size = struct.unpack(">QQ", data[HEADER : HEADER + 16])
    queue = [("", position, size)]
    while queue:
        prefix, pos, length = queue.pop(0)
        toc = data[pos : pos + length]
        count, i = varint(toc, 0)
        for _ in range(count):
            name_len, i = varint(toc, i)
            name = toc[i : i + name_len].decode()
            i += name_len + 32
            entry_size, kind, entry_pos = struct.unpack(">QBQ", toc[i : i + 17])
            i += 17 + (8 if kind == 2 else 0)
            path = prefix + name + ("/" if kind == 2 else "")
            found[path] = (entry_pos, entry_size)
            if kind == 2:
                queue.append((path, entry_pos, entry_size))
        assert i == len(toc), f"TOC {prefix or '/'} has {len(toc) - i} bytes past its entries"
    return found


def test_one_flipped_byte_anywhere_is_refused(s9pk: Path, read_back: dict[str, Any]) -> None:
    tampered = s9pk.parent / "tampered.s9pk"
    shutil.copyfile(s9pk, tampered)
    data = tampered.read_bytes()
    root = HEADER + 16
    positions = {
        "magic": 1, "pubkey": 3 + 5, "signature": 35 + 9, "root sighash": 99 + 3,
        "root TOC size": HEADER - 1, "root TOC position": HEADER + 7,
        "root TOC": root + 20, "root TOC end": root + read_back["rootTocSize"] - 1,
    }  # fmt: skip
    # The first and a middle byte of every TOC and every file body.
    starts = bodies_in_order(data)
    for path, (pos, length) in starts.items():
        positions[f"{path} first byte"] = pos
        positions[f"{path} middle"] = pos + length // 2
    assert len(starts) == len(read_back["entries"])
    refused = {}
    with tampered.open("r+b") as f:
        for where, offset in positions.items():
            f.seek(offset)
            original = f.read(1)
            f.seek(offset)
            f.write(bytes([original[0] ^ 0x01]))
            f.flush()
            done = inspect(tampered)
            refused[where] = (done.returncode, done.stderr.strip())
            f.seek(offset)
            f.write(original)
            f.flush()
    accepted = {w: r for w, r in refused.items() if r[0] == 0}
    assert not accepted, f"StartOS's reader accepted a flipped byte at {accepted}"
    assert inspect(tampered).returncode == 0  # restored: the same file is accepted again


def test_javascript_squashfs_holds_the_bundle_the_tests_run(s9pk: Path, tmp_path: Path) -> None:
    squashfs = extract(s9pk, "javascript.squashfs", tmp_path / "js.squashfs")
    subprocess.run(["unsquashfs", "-q", "-d", str(tmp_path / "js"), str(squashfs)], check=True)
    assert sorted(p.name for p in (tmp_path / "js").iterdir()) == ["index.js"]
    bundle = (REPO / "javascript" / "index.js").read_bytes()
    assert (tmp_path / "js" / "index.js").read_bytes() == bundle


def test_the_image_inside_boots_the_daemon_to_serving(s9pk: Path, tmp_path: Path) -> None:
    squashfs = extract(s9pk, "images/x86_64/main.squashfs", tmp_path / "main.squashfs")
    rootfs = tmp_path / "rootfs"
    subprocess.run(["unsquashfs", "-q", "-d", str(rootfs), str(squashfs)], check=True, timeout=300)
    meta = json.loads(extract(s9pk, "images/x86_64/main.json", tmp_path / "main.json").read_text())
    env = extract(s9pk, "images/x86_64/main.env", tmp_path / "main.env").read_text().split("\n")
    data = tmp_path / "data"
    data.mkdir()
    port = free_port()
    name = f"keysmith-s9pk-{port}"
    env_args = [a for line in [*env, f"KEYSMITH_BIND=127.0.0.1:{port}"] for a in ("-e", line)]
    podman(
        "run", "-d", "--name", name, "--network", "host", "-v", f"{data}:/data",
        "--workdir", meta["workdir"], "--user", meta["user"], *env_args,
        "--entrypoint", meta["entrypoint"][0], "--rootfs", str(rootfs), *(meta["cmd"] or []),
    )  # fmt: skip
    try:
        body = wait_serving(f"http://127.0.0.1:{port}/healthz", name)
        assert (body["ok"], body["schema_version"]) == (True, LATEST), body
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def wait_serving(url: str, name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                last = json.loads(response.read())
                if last.get("state") == "serving":
                    return last
        except OSError as error:
            last = error
        time.sleep(0.5)
    logs = podman("logs", name, check=False)
    raise AssertionError(f"never serving: {last}\n{logs.stdout}{logs.stderr}")
