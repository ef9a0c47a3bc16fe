import { VersionInfo } from '@start9labs/start-sdk'
import { revertSchemaTo } from './schema'

// The first native 0.4 release of Keysmith 0.1.0. A 0.3.5 install of Keysmith 0.1.0 is data
// version 0.1.0:0; its volume (the database, its pre-upgrade backups, the status file) is
// taken over as it is: the daemon's own migrator brings the schema up to date at boot, with a
// backup first, and refuses what it cannot prove safe. Going back reverts the schema to what
// 0.1.0:0 knows (SCHEMA_VERSION in ./schema), keeping every row written since; a migration
// without a down file makes that downgrade refuse, with the reason, before anything changes.
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
    down: revertSchemaTo('0.1.0:0'),
  },
})
