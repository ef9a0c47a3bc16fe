import { VersionInfo } from '@start9labs/start-sdk'
import { revertSchemaTo } from './schema'

// Keysmith 0.2.0, its first native 0.4 release. A 0.3.5 install of Keysmith 0.1.0 is data
// version 0.1.0:0; its volume (the database, its pre-upgrade backups, the status file) is
// taken over as it is: the daemon's own migrator brings the schema up to date at boot, with a
// backup first, and refuses what it cannot prove safe. Going back reverts the schema to what
// 0.1.0:0 knows (SCHEMA_VERSION in ./schema), keeping every row written since; a migration
// without a down file makes that downgrade refuse, with the reason, before anything changes.
export const v_0_2_0_0 = VersionInfo.of({
  version: '0.2.0:0',
  releaseNotes: {
    en_US:
      'Keysmith as a native StartOS 0.4 package: the health check shows upgrade progress and ' +
      'explains a refused upgrade, backups take a consistent snapshot of the database, and ' +
      'the daily licensing work (products, policies, licenses, machines, discount codes, ' +
      'audit log, self-heal history) is in the actions and the web console. A 0.3.5 install ' +
      'is taken over as is; a downgrade to it keeps every license written since and says what ' +
      'only the newer version can hold (API keys, webhooks). The API ' +
      "follows Keysat's shapes, with signed webhooks and scoped API keys.",
  },
  migrations: {
    up: async () => {},
    down: revertSchemaTo('0.1.0:0'),
  },
})
