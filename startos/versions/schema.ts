import { T } from '@start9labs/start-sdk'
import { runInImage } from '../run'
import { daemonCommand } from '../utils'

// The database schema each package version's daemon knows: the highest migration in the
// migrations/ folder it ships. A downgrade must bring the schema back to the older version's
// number, so every package version records its own here, and the newer package keeps the
// numbers of the versions it can be downgraded to. tests/test_startos_versions.py checks the
// current version's number against migrations/.
export const SCHEMA_VERSION = {
  // Keysmith 0.1.0, the StartOS 0.3.5 package: migrations 0001 to 0011 (daemon/downgrade.py's
  // OLDER_SCHEMA, which its prepare action reverts to, is the same number: a test checks).
  '0.1.0:0': 11,
  '0.2.0:0': 20,
} as const

export type PackageVersion = keyof typeof SCHEMA_VERSION

// Reverting a large table (a down file that rebuilds it) can take a while.
const REVERT_TIMEOUT_MS = 30 * 60_000

// A version's `down` migration: revert the schema, in a fresh container of this (newer)
// version's image with the data volume, to what `older` knows, through the daemon's own
// `migrate revert`. It plans first and refuses before changing anything when a step cannot be
// reverted (no down file, or an up file that is not the one applied), and a step that fails
// puts back the backup taken before the revert; either way its message is thrown, so StartOS
// shows it and the downgrade stops, never half-done. StartOS shows nothing for a down that
// succeeds, so its summary (what each step discarded, the backup taken first) goes to the
// service's logs; the action 'Self-heal history' shows the same for each step.
export const revertSchemaTo =
  (older: PackageVersion) =>
  async ({ effects }: { effects: T.Effects }): Promise<void> => {
    const to = String(SCHEMA_VERSION[older])
    const summary = await runInImage(
      effects,
      'migrate-revert',
      daemonCommand('migrate', 'revert', '--to', to, '--for-startos'),
      REVERT_TIMEOUT_MS,
    )
    console.info(summary.trim())
  }
