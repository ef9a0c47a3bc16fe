"""Drive the bundled StartOS 0.4 package in node against the real image (tests/startos/).

    with Package(folder, image) as pkg:                   # node + the test effects object
        pkg.call("main.start")                               # the package's own main
        pkg.wait_health("success")                           # what StartOS would show
        pkg.call("action.run", id="admin-credentials")       # an action, as StartOS runs it
        pkg.call("main.stop")
    with Package(folder) as pkg:                          # no image: forms and init only
        pkg.ok("init", kind="install")

The harness runs in a private mount namespace (unshare) so the paths the SDK hard-codes under
/media/startos exist only for it; its subcontainers are podman containers (bin/start-container).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.daemon_proc import free_port
from tests.image_tools import REPO, oci_env, podman

HERE = Path(__file__).resolve().parent
BUNDLE = REPO / "javascript" / "index.js"
_runs = itertools.count()


def missing_node() -> str | None:
    """Why the package cannot be built or run here, or None when it can."""
    absent = [tool for tool in ("node", "npm", "unshare", "nsenter") if shutil.which(tool) is None]
    return f"{', '.join(absent)} not installed" if absent else None


def build_bundle() -> Path:
    """`make javascript/index.js`: npm ci, then the ncc bundle (the Makefile's own rule)."""
    done = subprocess.run(
        ["make", "-C", str(REPO), "javascript/index.js"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"building the bundle failed:\n{done.stdout}\n{done.stderr}"
    return BUNDLE


def image_meta(image: str) -> str:
    """The image facts StartOS writes to /media/startos/images/main.json for the SDK."""
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", image).stdout)
    return json.dumps({
        "entrypoint": config.get("Entrypoint") or [],
        "cmd": config.get("Cmd") or [],
        "user": config.get("User") or "root",
        "workdir": config.get("WorkingDir") or "/",
    })  # fmt: skip


class Package:
    """One node process running the bundle with the test effects object."""

    def __init__(
        self, folder: Path, image: str | None = None, bind_port: int | None = None,
        data_version: str | None = None, bundle: Path = BUNDLE,
    ) -> None:  # fmt: skip
        """`folder` holds volumes/main (the data volume), backup/ and the harness's log."""
        self.volumes, self.backup = folder / "volumes", folder / "backup"
        (self.volumes / "main").mkdir(parents=True, exist_ok=True)
        self.backup.mkdir(parents=True, exist_ok=True)
        self.data = self.volumes / "main"
        self.image = image
        # The host network is shared, so the daemon binds a free loopback port.
        self.port = bind_port or free_port()
        self.run_id = f"ks{os.getpid()}x{next(_runs)}"
        self.env = dict(os.environ) | {
            "KEYSMITH_TEST_BUNDLE": str(bundle),
            "KEYSMITH_TEST_RUN": self.run_id,
        }
        if data_version:
            self.env["KEYSMITH_TEST_DATA_VERSION"] = data_version
        if image:
            self.env |= oci_env() | {
                "PATH": f"{HERE / 'bin'}:{os.environ['PATH']}",
                "KEYSMITH_TEST_HOST_PATH": os.environ["PATH"],
                "KEYSMITH_TEST_HOST_MNT": f"/proc/{os.getpid()}/ns/mnt",
                "KEYSMITH_TEST_IMAGE": image,
                "KEYSMITH_TEST_IMAGE_META": image_meta(image),
                "KEYSMITH_TEST_VOLUMES": str(self.volumes),
                "KEYSMITH_TEST_BACKUP": str(self.backup),
                "KEYSMITH_TEST_CONTAINER_ENV": f"KEYSMITH_BIND=127.0.0.1:{self.port}",
            }
        self.log = folder / f"{self.run_id}.log"

    def __enter__(self) -> Package:
        read, write = os.pipe()
        self.env["KEYSMITH_TEST_ANSWER_FD"] = str(write)
        with open(self.log, "wb") as log:
            sandbox = ["unshare", "--mount", "--propagation", "private", "--"] if self.image else []
            self.proc = subprocess.Popen(
                [*sandbox, "node", str(HERE / "harness.js")],
                stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                pass_fds=(write,), text=True, cwd=REPO,
            )  # fmt: skip
        os.close(write)
        self.answers = os.fdopen(read, "r")
        assert self._read().get("ready"), self.logs()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.answers.close()
        if self.image:
            for name in self.containers():
                podman("rm", "-f", "-t", "0", name, check=False)

    def _read(self) -> dict[str, Any]:
        line = self.answers.readline()
        if not line:
            raise AssertionError(f"the harness exited; its log:\n{self.logs()}")
        return json.loads(line)

    def call(self, cmd: str, **args: Any) -> dict[str, Any]:
        self.proc.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def ok(self, cmd: str, **args: Any) -> dict[str, Any]:
        answer = self.call(cmd, **args)
        assert answer["ok"], f"{cmd} failed: {answer['error']}\n{self.logs()[-4000:]}"
        return answer

    def health(self) -> list[dict[str, Any]]:
        return self.ok("health.events")["events"]

    def wait_health(self, *results: str, timeout: float = 120, after: int = 0) -> dict[str, Any]:
        """The first health report (from index `after`) whose result is one of `results`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.health()[after:]:
                if event["result"] in results:
                    return event
            time.sleep(0.5)
        raise AssertionError(f"health never reached {results}: {self.health()}\n{self.logs()}")

    def containers(self) -> list[str]:
        """The running podman containers of this package run (its subcontainers)."""
        names = podman("ps", "--format", "{{.Names}}", check=False).stdout.split()
        return [name for name in names if name.startswith(f"keysmith-sdk-{self.run_id}-")]

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
