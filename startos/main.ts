import { sdk } from './sdk'
import { healthFromExit } from './health'
import { daemonCommand, dataMounts } from './utils'

// The daemon drains in-flight requests for up to 20 s on SIGTERM, then closes the database;
// this leaves room for both before StartOS escalates to SIGKILL.
export const SIGTERM_TIMEOUT_MS = 30_000
// The health command answers in about 2 s at worst (its /healthz timeout); a busy machine can
// take a while to start Python, which must not read as a failure.
const HEALTH_TIMEOUT_MS = 20_000

export const main = sdk.setupMain(async ({ effects }) => {
  const daemon = sdk.SubContainer.of(effects, { imageId: 'main' }, dataMounts, 'keysmith')

  return sdk.Daemons.of(effects).addDaemon('primary', {
    subcontainer: daemon,
    exec: {
      // The image's entrypoint: tini as PID 1 (hence runAsInit), then `python -m daemon serve`.
      command: sdk.useEntrypoint(),
      runAsInit: true,
      sigtermTimeout: SIGTERM_TIMEOUT_MS,
    },
    ready: {
      display: 'Licensing API',
      // Every 2 s while starting or migrating so the progress message moves during an
      // upgrade; 5 s while failing (safe mode explains itself, a fix needs a restart anyway).
      trigger: sdk.trigger.statusTrigger(30_000, {
        starting: 2_000,
        loading: 2_000,
        waiting: 2_000,
        failure: 5_000,
      }),
      fn: async () =>
        healthFromExit(await daemon.exec(daemonCommand('health'), undefined, HEALTH_TIMEOUT_MS)),
    },
    requires: [],
  })
})
