"""`python -m daemon serve`: the container's main process and its lifecycle.

Boot: record the attempt in the status file, run the migrator (`daemon.db.init`, the same code
as `migrate run`), open the licensing service, then serve. On StartOS a main process that exits
is restarted every 15 s forever, so on any cause we know (migrator blocked or failed, a
malformed setting, a port that cannot be bound, three crashed boots in a row) the daemon does
not exit: it stays up in safe mode, serving `/healthz` (503 with the cause) and `/metrics`,
answering 503 elsewhere, and never touching the database. Leaving safe mode takes a restart.

SIGTERM: stop accepting, let in-flight requests finish, close the pool, mark a clean stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sqlite3
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

from daemon import __version__, causes, downgrade, metrics
from daemon.logs import register_secret, setup_logging
from daemon.settings import Settings, SettingsError
from daemon.status import (
    FAILED,
    MIGRATING,
    STARTING,
    Lifecycle,
    history_from,
    read_status,
)

if TYPE_CHECKING:
    # Only for annotations: serve imports these late, after the status file says "starting".
    from aiohttp import web

    from daemon.db import Pool
    from daemon.licensing.service import Licensing
    from daemon.migrate import Outcome
    from daemon.migrate.apply import Progress
    from daemon.webhooks import Sender

log = logging.getLogger("keysmith.boot")

# Well inside StartOS's 30 s sigterm-timeout, leaving time to close the pool afterwards.
SHUTDOWN_GRACE_SECONDS = 20.0


@dataclass
class Serving:
    """What a successful boot holds open until shutdown."""

    pool: Pool
    licensing: Licensing
    sender: Sender | None = None  # once serving


# The database, its backups and the status file hold the issuer key and the admin key: whatever
# this process creates is readable by its owner only, and files left wider by an older version
# are narrowed at boot.
PRIVATE_UMASK = 0o077


def serve_main() -> int:
    os.umask(PRIVATE_UMASK)
    settings, errors = Settings.lenient()
    setup_logging(settings.log_format)
    register_secret(settings.admin_api_key)
    register_secret(settings.console_password)
    lifecycle = _record_boot_attempt(settings)
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_serve(settings, errors, lifecycle))
    except Exception as e:  # a bug of ours: still never exit into a crash loop
        return _last_resort(lifecycle, e)


def _record_boot_attempt(settings: Settings) -> Lifecycle:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        log.error(
            "cannot create the data folder", extra={"path": str(settings.data_dir), "error": str(e)}
        )
    _narrow_modes(settings)
    previous = read_status(settings.status_path)
    downgrade.release_if_superseded(settings.db_path, previous, __version__)
    history = history_from(previous)
    lifecycle = Lifecycle(
        settings.status_path, version=__version__, bind=settings.bind, history=history
    )
    lifecycle.update(state=STARTING)
    _publish(lifecycle)
    log.info(
        "keysmith starting",
        extra={
            "version": __version__,
            "pid": os.getpid(),
            "db": str(settings.db_path),
            "bind": settings.bind,
            "failed_boots_before": history.failed_before,
        },
    )
    if history.previous_unclean:
        log.warning(history.previous_unclean, extra={"crashes_in_a_row": history.crashes_before})
    return lifecycle


def _narrow_modes(settings: Settings) -> None:
    from daemon.migrate.backup import backups_dir
    from daemon.migrate.private import narrow, narrow_modes

    try:
        fixed = narrow_modes(settings.db_path, backups_dir(settings.db_path))
        if narrow(settings.status_path):
            fixed.append(settings.status_path)
    except OSError as e:
        log.warning(
            "could not make the database files private", extra={"error": f"{type(e).__name__}: {e}"}
        )
        return
    if fixed:
        log.warning(
            "made files holding secrets readable by the owner only (they were readable by others)",
            extra={"files": ",".join(str(p) for p in fixed)},
        )


def _publish(lifecycle: Lifecycle) -> None:
    record = lifecycle.snapshot()
    metrics.set_lifecycle(
        record["state"],
        safe_mode=record["safe_mode"],
        failed_boots=record["consecutive_failed_boots"],
    )


async def _serve(settings: Settings, errors: list[SettingsError], lifecycle: Lifecycle) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    serving: Serving | None = None
    runner = None
    try:
        causes.refuse_known(settings, errors, lifecycle.history)
        causes.refuse_held(settings)
        serving = await _migrate_and_open(settings, lifecycle, stop)
        if serving is None or stop.is_set():  # SIGTERM arrived while migrating: stop
            return await _shutdown(lifecycle, None, serving)
        runner = await _start_http(settings, lifecycle, serving.licensing)
        serving.sender = await _start_webhooks(settings, serving.licensing)
        _write_properties(settings, lifecycle, serving.licensing)
        lifecycle.mark_serving(http=True)
        loop.call_later(settings.healthy_serving_seconds, lifecycle.mark_served_healthily)
        _publish(lifecycle)
        log.info(
            "serving",
            extra={
                "url": f"http://{settings.bind}",
                "schema_version": lifecycle.snapshot()["schema_version"],
            },
        )
    except causes.SafeMode as safe:
        if serving is not None:
            await _close(serving)
            serving = None
        runner = await _enter_safe_mode(settings, lifecycle, safe)
    except Exception as e:
        if serving is not None:
            await _close(serving)
            serving = None
        runner = await _enter_safe_mode(settings, lifecycle, causes.unexpected(e))

    await stop.wait()
    return await _shutdown(lifecycle, runner, serving)


async def _migrate_and_open(
    settings: Settings, lifecycle: Lifecycle, stop: asyncio.Event
) -> Serving | None:
    """The open pool and licensing service, or None when a shutdown stopped the migration."""
    from daemon import db
    from daemon.migrate import Interrupted, MigrateError

    lifecycle.update(state=MIGRATING, progress=None)
    _publish(lifecycle)

    def on_progress(progress: Progress) -> None:  # called from the migrator's worker thread
        if stop.is_set():  # SIGTERM while migrating: stop between two migrations
            raise Interrupted
        lifecycle.update(
            progress={
                "version": progress.version,
                "description": progress.description,
                "index": progress.index,
                "total": progress.total,
                "action": progress.action,
            }
        )

    try:
        pool = await db.init(
            settings.db_path, migrations_dir=settings.migrations_dir, on_progress=on_progress
        )
    except Interrupted:
        log.info("shutdown requested while migrating; stopped between two migrations")
        return None
    except MigrateError as e:
        metrics.record_migration_failure(e.reason)
        raise causes.migrate_cause(e) from e
    except (OSError, sqlite3.Error) as e:
        if causes.is_locked(e):  # another process holds a write transaction: nothing changed
            metrics.record_migration_failure("database_locked")
            raise causes.locked(settings, e) from e
        metrics.record_migration_failure("db_unreadable")
        raise causes.unopenable(settings, e) from e
    try:
        _record_outcome(lifecycle, pool.outcome)
        licensing = await _open_licensing(pool, settings)
        pool.start_rechecks()
    except BaseException:
        await pool.close()
        raise
    return Serving(pool=pool, licensing=licensing)


def _record_outcome(lifecycle: Lifecycle, outcome: Outcome) -> None:
    metrics.record_migration_outcome(outcome)
    heals = [
        {
            "version": h.version,
            "action": h.action,
            "evidence": h.evidence,
            "backup_path": h.backup_path,
        }
        for h in outcome.heals
    ]
    lifecycle.update(
        schema_version=outcome.schema_version,
        applied=list(outcome.applied),
        heals=heals,
        progress=None,
    )
    log.info(
        "database ready",
        extra={
            "schema_version": outcome.schema_version,
            "applied": ",".join(map(str, outcome.applied)),
            "self_heals": len(heals),
            "pending": outcome.pending,
            "seconds": round(outcome.seconds, 3),
        },
    )


async def _open_licensing(pool: Pool, settings: Settings) -> Licensing:
    from daemon.licensing.service import Licensing, Limits

    limits = Limits.of(settings)
    licensing = await Licensing.open(pool, admin_api_key=settings.admin_api_key, limits=limits)
    register_secret(licensing.admin_api_key)
    for secret in await licensing.outbox.webhook_secrets():
        register_secret(secret)
    return licensing


async def _start_http(
    settings: Settings, lifecycle: Lifecycle, licensing: Licensing | None
) -> web.AppRunner:
    from aiohttp import web

    from daemon.api.app import create_app

    app = create_app(
        lifecycle,
        licensing,
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        console=settings,
    )
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
    await runner.setup()
    site = web.TCPSite(
        runner, settings.bind_host, settings.bind_port, shutdown_timeout=SHUTDOWN_GRACE_SECONDS
    )
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise causes.port_taken(settings, e) from e
    return runner


async def _enter_safe_mode(
    settings: Settings, lifecycle: Lifecycle, safe: causes.SafeMode
) -> web.AppRunner | None:
    log.error(
        f"safe mode: {safe.cause.message}",
        extra={
            "state": safe.state,
            "kind": safe.cause.kind,
            "remedy": safe.cause.remedy,
            "data_intact": safe.cause.data_intact,
        },
    )
    for blocker in safe.cause.blockers:
        log.error("migration refused", extra=blocker)
    runner = None
    if safe.cause.kind != "port":  # when the port is the problem, do not try it again
        try:
            runner = await _start_http(settings, lifecycle, None)
        except causes.SafeMode as no_port:
            log.error(
                "safe mode without HTTP: the health check will read the status file",
                extra={"reason": no_port.cause.message},
            )
    # Written once HTTP is up (or known to be down), so a reader of "blocked"/"failed" in the
    # status file can rely on /healthz answering when `http` is true.
    lifecycle.enter_safe_mode(safe.state, safe.cause, http=runner is not None)
    _publish(lifecycle)
    return runner


def _write_properties(settings: Settings, lifecycle: Lifecycle, licensing: Licensing) -> None:
    from daemon.migrate import heals_recorded
    from daemon.properties import Properties, write_properties

    record = lifecycle.snapshot()
    props = Properties(
        version=__version__,
        schema_version=record["schema_version"],
        heals_at_boot=len(record["heals"]),
        heals_total=heals_recorded(settings.db_path),
        public_key=licensing.public_key_pem,
        admin_api_key=settings.admin_api_key or licensing.admin_api_key,
    )
    try:
        write_properties(settings.data_dir, props)
    except OSError as e:
        log.warning(
            "could not write the StartOS properties file; serving anyway",
            extra={"error": f"{type(e).__name__}: {e}"},
        )


async def _start_webhooks(settings: Settings, licensing: Licensing) -> Sender:
    """Heals not yet announced become `migration.self_healed` events (the heal log is the
    record, so a crash before this only delays them), then the sender starts."""
    from daemon.migrate import heal_history
    from daemon.webhooks import Sender

    oldest_first = [h._asdict() for h in reversed(heal_history(settings.db_path))]
    await licensing.outbox.announce_heals(oldest_first)
    sender = Sender(licensing.outbox, settings)
    sender.start()
    return sender


async def _close(serving: Serving) -> None:
    if serving.sender is not None:
        await serving.sender.stop()
    serving.licensing.close()
    await serving.pool.close()


async def _shutdown(
    lifecycle: Lifecycle, runner: web.AppRunner | None, serving: Serving | None
) -> int:
    log.info("stopping: finishing in-flight requests", extra={"state": lifecycle.state})
    if runner is not None:
        await _drain_http(runner)
    if serving is not None:
        await _close(serving)
    lifecycle.mark_stopped()
    _publish(lifecycle)
    log.info("stopped cleanly")
    return 0


async def _drain_http(runner: web.AppRunner) -> None:
    from daemon.api.app import IN_FLIGHT_KEY

    for site in list(runner.sites):
        await site.stop()  # stop accepting; open connections keep going
    in_flight = runner.app[IN_FLIGHT_KEY]
    if not await in_flight.drain(SHUTDOWN_GRACE_SECONDS):
        log.warning(
            "shutdown grace period over; cutting off requests still in flight",
            extra={"in_flight": in_flight.count},
        )
    await runner.cleanup()


def _last_resort(lifecycle: Lifecycle, e: Exception) -> int:
    """A bug escaped the boot: record it and wait for SIGTERM rather than exit into a loop."""
    safe = causes.unexpected(e)
    with contextlib.suppress(Exception):
        lifecycle.enter_safe_mode(FAILED, safe.cause)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    with contextlib.suppress(Exception):
        lifecycle.mark_stopped()
    print("keysmith stopped after an unexpected error; see the log above", file=sys.stderr)
    return 0
