import { sdk } from './sdk'
import { daemonCommand } from './utils'
import { runInImage } from './run'

// rsync must never copy the live database: SQLite in WAL mode keeps committed pages in the
// -wal file, and a copy of the three files taken while the daemon writes can be torn. The
// pre-backup hook asks the daemon's code for a consistent copy (SQLite's online backup) in
// backup-snapshot/, which rsync does carry; the post-restore hook puts it in place.
// Patterns starting with '/' are anchored at the volume's root, so the snapshot
// backup-snapshot/keysmith.db is not excluded with the live file of the same name.
export const LIVE_FILES = [
  '/keysmith.db',
  '/keysmith.db-wal',
  '/keysmith.db-shm',
  '/keysmith.db-journal',
  '*.migrate-lock',
  '*.users-lock',
  '/keysmith-status.json',
]

// A snapshot of a large database can take a while; the default 30 s exec timeout cannot.
const SNAPSHOT_TIMEOUT_MS = 30 * 60_000
const snapshot = daemonCommand('backup', 'snapshot')
const restore = daemonCommand('backup', 'restore')

export const { createBackup, restoreInit } = sdk.setupBackups(async () =>
  sdk.Backups.ofVolumes('main')
    .setOptions({ exclude: LIVE_FILES })
    .setPreBackup(async effects => {
      await runInImage(effects, 'backup-snapshot', snapshot, SNAPSHOT_TIMEOUT_MS)
    })
    .setPostRestore(async effects => {
      await runInImage(effects, 'backup-restore', restore, SNAPSHOT_TIMEOUT_MS)
    }),
)
