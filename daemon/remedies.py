"""The migrator's remedy codes in words for a StartOS operator.

The migrator names what to do with `Remedy` codes and never words them itself (it works on any
sqlx folder, for any host). A StartOS operator acts through the StartOS interface (its actions,
backups and service page), never a shell: the daemon's health check, the actions and the
console all word the codes here. The shell's words are in daemon/cli_migrate.py.
"""

from __future__ import annotations

import os

from daemon.migrate.errors import Remedy


def startos_words(remedies: tuple[Remedy, ...], params: dict[str, str] | None = None) -> str:
    """The migrator's remedy codes in words for a StartOS operator, who acts through the
    StartOS interface (its actions, backups and service page), not a shell."""
    return "; or ".join(_startos_word(remedy, params or {}) for remedy in remedies)


def _startos_word(remedy: Remedy, params: dict[str, str]) -> str:
    match remedy:
        case Remedy.INSTALL_PREVIOUS_VERSION:
            return "install the previous version of Keysmith"
        case Remedy.INSTALL_NEWER_VERSION:
            return "install that newer version of Keysmith again (it migrated this database)"
        case Remedy.RESTORE_BACKUP:
            return "restore the pre-upgrade backup with the action 'Restore pre-upgrade backup'"
        case Remedy.RESTORE_FULL_BACKUP:
            return "restore the service from a StartOS backup"
        case Remedy.CHOOSE_OLDER_BACKUP:
            return "restore the service from an older StartOS backup"
        case Remedy.FREE_DISK_SPACE:
            return (
                "free disk space on the StartOS data drive (old pre-upgrade backups in "
                f"{params.get('folder', 'backups/')} can go)"
            )
        case Remedy.MAKE_VOLUME_WRITABLE:
            return "make sure the StartOS data drive is healthy, writable and not full"
        case Remedy.STOP_OTHER_PROCESS:
            return (
                "stop whatever else has the database open (another copy of the service, or an "
                "action still running) and let it finish"
            )
        case Remedy.WAIT_FOR_OTHER_MIGRATION:
            return "wait for the other upgrade of this database to finish"
        case Remedy.REPORT_TO_MAINTAINERS:
            return "report this error and the service logs to the maintainers"
        case Remedy.RETRY:
            return "nothing: the remaining migrations run at the next start"
        case Remedy.KEEP_CURRENT_VERSION:
            return (
                "keep the version of Keysmith now installed: the downgrade was stopped, and it "
                "runs on this data as before"
            )
        case Remedy.ACCEPT_CHANGE:
            return (
                "only if the change was deliberate and the database already has what the new "
                "text describes, run the action 'Accept a changed migration' (it runs no SQL)"
            )
        case Remedy.CHECK_STATUS:
            return "run the action 'Migration status' to see which migration is blocked"
        case Remedy.RETRY_OR_STOP_HOLDER:
            return (
                "restart the service to retry; if it happens again, stop whatever else keeps "
                "the database busy (another copy of the service, or an action still running)"
            )
        case Remedy.CHOOSE_APPLIED_TARGET:
            return f"choose one of the applied versions ({params.get('applied', 'see status')})"
        case Remedy.REUNITE_WAL:
            return reunite_wal(params.get("wal", "the -wal file"))


def reunite_wal(wal: str) -> str:
    """The same words for every host: only a shell on the data volume can move the files."""
    name = os.path.basename(wal).removesuffix("-wal")
    return (
        f"move {wal} (and its -shm file) beside the database file it belongs to, named after "
        f"that file (for {name} moved to {name}.old: {name}.old-wal), so that opening it merges "
        "the writes in; or, if those writes are not wanted, move them aside yourself. Then run "
        "the restore again"
    )


def startos_remedy(remedies: tuple[Remedy, ...], params: dict[str, str] | None = None) -> str:
    """A full remedy sentence for the status file, /healthz and the health check."""
    return f"{startos_words(remedies, params)}. Then restart the service."
