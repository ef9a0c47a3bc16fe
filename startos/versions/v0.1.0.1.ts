import { IMPOSSIBLE, VersionInfo } from '@start9labs/start-sdk'

// The first native 0.4 release of Keysmith 0.1.0. A 0.3.5 install of Keysmith 0.1.0 is data
// version 0.1.0:0; its volume (the database, its pre-upgrade backups, the status file) is
// taken over as it is: the daemon's own migrator brings the schema up to date at boot, with a
// backup first, and refuses what it cannot prove safe. Going back to the legacy package is not
// offered: this version's daemon may have migrated the schema past what the old one knows.
export const v_0_1_0_1 = VersionInfo.of({
  version: '0.1.0:1',
  releaseNotes: {
    en_US:
      'Keysmith as a native StartOS 0.4 package: the health check shows upgrade progress and ' +
      'explains a refused upgrade, backups take a consistent snapshot of the database, and ' +
      'the daily licensing work (products, policies, licenses, machines, discount codes, ' +
      'audit log, self-heal history) is in the actions. A 0.3.5 install is taken over as is.',
  },
  migrations: {
    up: async () => {},
    down: IMPOSSIBLE,
  },
})
