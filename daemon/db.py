"""The database: `init` migrates, then opens the serving pool with the production settings.

The pool holds the database's users lock shared for its whole life (daemon/migrate/lock.py), so
no restore of a backup, and no migration step that might need one, runs while this process
has the database open. asyncio and aiosqlite are imported inside the functions that use them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from daemon import __version__, schema

TYPE_CHECKING = False  # typing, asyncio and pathlib stay unimported for the migrate CLI
if TYPE_CHECKING:
    import asyncio
    from pathlib import Path

    import aiosqlite

    from daemon.migrate import Outcome
    from daemon.migrate.apply import Progress
    from daemon.migrate.lock import UsersLock

POOL_SIZE = 8
# While writes are degraded by a lock another process held, this often the pool checks whether
# the lock is free again (taking it waits at most the busy timeout).
LOCK_RECHECK_SECONDS = 2.0


class Pool:
    """A fixed set of aiosqlite connections. Reads share them freely; writes go through
    `transaction()` (BEGIN IMMEDIATE), which SQLite serialises with the busy timeout."""

    def __init__(
        self, connections: list[aiosqlite.Connection], path: Path, users: UsersLock
    ) -> None:
        import asyncio

        from daemon.storage import StorageHealth

        # The file, for readers that open their own connection (licensing's validate path).
        self.path = path
        self._connections = connections
        self.health = StorageHealth()
        self._users = users
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for conn in connections:
            self._idle.put_nowait(conn)
        self.outcome: Outcome | None = None
        self._rechecks: asyncio.Task[None] | None = None

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = await self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put_nowait(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; its outcome tells `health` whether writes work (a commit that
        changed no row proves nothing, e.g. on a full disk)."""
        async with self.connection() as conn:
            changes = conn.total_changes
            try:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    await conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        await conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                self.health.write_failed(e)
                raise
            if conn.total_changes != changes:
                self.health.write_succeeded()

    def start_rechecks(self) -> None:
        """Recheck a held lock in the background while serving (`recheck_lock`)."""
        import asyncio

        async def loop() -> None:
            while True:
                await asyncio.sleep(LOCK_RECHECK_SECONDS)
                await self.recheck_lock()

        self._rechecks = asyncio.create_task(loop(), name="storage-recheck")

    async def recheck_lock(self) -> None:
        """While writes are degraded by a held lock, take the write lock and let go at once:
        nothing is written, and health recovers without waiting for the next write."""
        from daemon.storage import Fault

        degraded = self.health.degraded
        if degraded is None or degraded.fault != Fault.BUSY:
            return
        async with self.connection() as conn:
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error:
                return  # still held: the state stays as the failed write set it
            await conn.execute("ROLLBACK")
        self.health.lock_free()

    async def close(self) -> None:
        import asyncio

        if self._rechecks is not None:
            self._rechecks.cancel()
            await asyncio.gather(self._rechecks, return_exceptions=True)
        for conn in self._connections:
            await conn.close()
        self._users.release()  # only once every connection is closed


async def open_pool(path: str | Path, size: int = POOL_SIZE, lock_timeout: float = 120.0) -> Pool:
    """The pool, holding this database's users lock shared (waiting up to `lock_timeout` for
    another process's step that could need a restore); the lock is released when it closes."""
    import asyncio
    from pathlib import Path

    import aiosqlite

    # The serving pool uses exactly the migrator's settings (WAL, synchronous=NORMAL, foreign
    # keys on, 5 s busy timeout), so migrations run under the rules the application runs under.
    from daemon.migrate.apply import CONNECTION_PRAGMAS
    from daemon.migrate.lock import UsersLock

    users = UsersLock(Path(path))
    await asyncio.to_thread(users.take_shared, lock_timeout)
    connections: list[aiosqlite.Connection] = []
    try:
        for _ in range(size):
            conn = await aiosqlite.connect(path, isolation_level=None)
            connections.append(conn)
            conn.row_factory = sqlite3.Row
            for pragma in CONNECTION_PRAGMAS:
                await conn.execute(pragma)
    except BaseException:
        for conn in connections:
            await conn.close()
        users.release()
        raise
    return Pool(connections, Path(path), users)


async def init(
    path: str | Path,
    *,
    migrations_dir: str | Path | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    lock_timeout: float = 120.0,
) -> Pool:
    """Migrate the database (raising a MigrateError on refusal or failure), then open the pool.

    The migration runs before this process takes the users lock, so it may take it exclusively
    itself. Taking it shared then waits for any other process's step that could need a restore.
    """
    import asyncio

    from daemon.migrate import run_migrations

    outcome = await asyncio.to_thread(
        run_migrations,
        path,
        migrations_dir or schema.MIGRATIONS_DIR,
        idempotent=schema.IDEMPOTENT_MIGRATIONS,
        daemon_version=__version__,
        on_progress=on_progress,
        lock_timeout=lock_timeout,
        revert_newer=True,  # a downgrade the platform did not revert: the data carries its downs
    )
    pool = await open_pool(path, lock_timeout=lock_timeout)
    pool.outcome = outcome
    return pool
