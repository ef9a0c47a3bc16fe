"""Build and run the real service image with buildah and podman, as StartOS would run it.

    reason = missing_tools()                      # None when the image tests can run here
    build_image("localhost/keysmith-test:a", REPO)
    context = variant_context(tmp, {"0009_x.sql": crlf_bytes})   # same Dockerfile, new files
    with Container(tag, data_dir) as c:           # podman run, host network, data at /data
        code, out, err = c.health()               # the manifest's health check, via podman exec
        c.request("GET", "/healthz"); c.logs(); c.stop()
    run_action(tag, data_dir, "admin-credentials")  # a fresh container, like inject: false

Everything goes through scripts/build-image.sh and the private podman settings of
scripts/oci-env.sh, the same code `make image` uses, so the tests prove the build helpers too.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon_proc import free_port

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "scripts"
MANIFEST: dict[str, Any] = yaml.safe_load((REPO / "manifest.yaml").read_text())
NEEDED_TOOLS = ("buildah", "podman", "debootstrap", "runc", "flock")
# What the build context holds (the .dockerignore allowlist): variants copy exactly this.
CONTEXT_ITEMS = (
    "Dockerfile", ".dockerignore", "requirements.lock", "daemon", "migrations",
    "scripts/docker_entrypoint.sh",
)  # fmt: skip
BUILD_TIMEOUT = 900  # a cold build on a busy 2-core machine, base image included
_names = itertools.count()


def tools_required(reason: str | None) -> Any:
    """A module-scoped autouse fixture (assign it to a name in the test module) that runs before
    the module's image builds: it skips every test there when `reason` says a tool is missing,
    and under CI fails them with it instead, since a CI run that skipped every image test would
    pass having run none."""

    @pytest.fixture(scope="module", autouse=True)
    def image_tools_present() -> None:
        if reason is None:
            return
        if os.environ.get("CI"):
            pytest.fail(f"the image tests cannot run in CI: {reason}", pytrace=False)
        pytest.skip(f"the image tests cannot run here: {reason}")

    return image_tools_present


def missing_tools() -> str | None:
    """Why the image tests cannot run on this machine, or None when they can."""
    absent = [tool for tool in NEEDED_TOOLS if shutil.which(tool) is None]
    if absent:
        return (
            f"{', '.join(absent)} not installed (tests/system-deps.sh installs them in CI: "
            "apt-get install buildah podman debootstrap runc uidmap)"
        )
    if os.geteuid() != 0:
        return "buildah --isolation chroot and debootstrap need root"
    return None


@functools.cache
def _oci_settings() -> tuple[tuple[str, str], ...]:
    printed = subprocess.run(
        ["bash", str(SCRIPTS / "oci-env.sh"), "--print"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return tuple(tuple(line.split("=", 1)) for line in printed.splitlines() if "=" in line)


def oci_env() -> dict[str, str]:
    """The environment with the private storage and engine settings (scripts/oci-env.sh)."""
    return dict(os.environ) | dict(_oci_settings())


def podman(*args: str, check: bool = True, timeout: float = 120, stdin: str | None = None):
    done = subprocess.run(
        ["podman", *args], capture_output=True, text=True, env=oci_env(), input=stdin,
        timeout=timeout, check=False,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done


def build_image(tag: str, context: Path = REPO, output: Path | None = None) -> float:
    """Build the Dockerfile in `context` with buildah (never a Docker engine, so podman sees
    the image), optionally saved as a docker-archive; returns the seconds it took."""
    started = time.monotonic()
    env = oci_env() | {"KEYSMITH_FORCE_BUILDAH": "1"}
    extra = ["--output", str(output)] if output else []
    done = subprocess.run(
        ["bash", str(SCRIPTS / "build-image.sh"), *extra, tag, str(context)],
        capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"building {tag} failed:\n{done.stdout}\n{done.stderr}")
    return time.monotonic() - started


def image_layers(tag: str) -> list[str]:
    """The image's layer digests, base first."""
    return json.loads(podman("image", "inspect", "--format", "{{json .RootFS.Layers}}", tag).stdout)


def variant_context(folder: Path, migration_bytes: dict[str, bytes]) -> Path:
    """A copy of the build context with some migration files replaced (same Dockerfile)."""
    folder.mkdir(parents=True)
    for item in CONTEXT_ITEMS:
        source, dest = REPO / item, folder / item
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, dest)
    for name, data in migration_bytes.items():
        target = folder / "migrations" / name
        assert target.exists(), f"no migration {name} to replace"
        target.write_bytes(data)
    return folder


def procedure_argv(proc: dict[str, Any]) -> list[str]:
    return [proc["entrypoint"], *proc.get("args", [])]


class Container:
    """The main container, run as StartOS runs it: the manifest's entrypoint, the data volume
    at /data. The host network is shared here, so the daemon binds a free loopback port."""

    def __init__(self, image: str, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.image = image
        self.data_dir = data_dir
        self.port = free_port()
        self.name = f"keysmith-test-{os.getpid()}-{next(_names)}"
        self.env = {"KEYSMITH_BIND": f"127.0.0.1:{self.port}", **(env or {})}
        self.url = f"http://127.0.0.1:{self.port}"
        self.exit_code: int | None = None

    def __enter__(self) -> Container:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        podman("rm", "-f", "-t", "0", self.name, check=False)

    def start(self) -> None:
        main = MANIFEST["main"]
        mount = main["mounts"]["main"]
        env_args = [a for k, v in self.env.items() for a in ("-e", f"{k}={v}")]
        podman(
            "run", "-d", "--name", self.name, "--network", "host",
            "-v", f"{self.data_dir}:{mount}", *env_args,
            "--entrypoint", main["entrypoint"], self.image, *main["args"],
        )  # fmt: skip

    def running(self) -> bool:
        done = podman("inspect", "--format", "{{.State.Running}}", self.name, check=False)
        return done.stdout.strip() == "true"

    def exec(self, *argv: str, stdin: str | None = None, timeout: float = 60):
        return podman("exec", "-i", self.name, *argv, check=False, stdin=stdin, timeout=timeout)

    def health(self) -> tuple[int, str, str]:
        """The manifest's health check, run the way StartOS runs an injected check: exec'd in
        the running container, with the milliseconds since start on stdin."""
        check = next(iter(MANIFEST["health-checks"].values()))
        done = self.exec(*procedure_argv(check), stdin=json.dumps(5000))
        return done.returncode, done.stdout, done.stderr

    def wait_health(self, codes: tuple[int, ...], timeout: float = 90) -> tuple[int, str, str]:
        """Poll the health check until it exits with one of `codes`."""
        deadline = time.monotonic() + timeout
        result = (-1, "", "")
        while time.monotonic() < deadline:
            result = self.health()
            if result[0] in codes:
                return result
            if not self.running():
                raise AssertionError(f"container exited; logs:\n{self.logs()}")
            time.sleep(0.5)
        raise AssertionError(f"health never reached {codes}: last {result}; logs:\n{self.logs()}")

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method,
            headers={"Content-Type": "application/json", **(headers or {})},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def stop(self) -> float:
        """`podman stop` with the manifest's sigterm-timeout, as StartOS stops a service;
        returns the seconds it took and records the exit code."""
        timeout = int(str(MANIFEST["main"]["sigterm-timeout"]).rstrip("s"))
        started = time.monotonic()
        podman("stop", "-t", str(timeout), self.name, timeout=timeout + 30)
        took = time.monotonic() - started
        code = podman("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout.strip()
        self.exit_code = int(code)
        return took


def run_action(image: str, data_dir: Path, action_id: str) -> subprocess.CompletedProcess[str]:
    """Run a manifest action as StartOS does with `inject: false`: a fresh container from the
    image, with the action's mounts, its entrypoint and arguments."""
    impl = MANIFEST["actions"][action_id]["implementation"]
    assert impl["inject"] is False
    mounts = [a for vol, path in impl["mounts"].items() for a in ("-v", f"{data_dir}:{path}")]
    argv = procedure_argv(impl)
    return podman(
        "run", "--rm", "--network", "none", *mounts, "--entrypoint", argv[0], image, *argv[1:],
        check=False, timeout=120,
    )  # fmt: skip


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample of `name` in Prometheus text output."""
    samples = []
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric, _, labels = head.partition("{")
        if metric != name:
            continue
        pairs = {}
        for part in labels.rstrip("}").split('",'):
            if "=" in part:
                key, _, raw = part.partition("=")
                pairs[key.strip()] = raw.strip().strip('"')
        samples.append((pairs, float(value)))
    return samples
