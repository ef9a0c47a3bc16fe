import { T } from '@start9labs/start-sdk'

// `python -m daemon health` speaks StartOS's legacy exit codes; this is their 0.4 reading.
// 0 ready (stdout is the summary), 60 starting, 61 loading (stderr is the migration's
// progress), 59 disabled, anything else a failure whose stderr says the cause and the remedy.
export const EXIT_READY = 0
export const EXIT_DISABLED = 59
export const EXIT_STARTING = 60
export const EXIT_LOADING = 61

export type HealthResult = { result: T.HealthStatus; message: string | null }

export type ExecOutcome = {
  exitCode: number | null
  exitSignal: NodeJS.Signals | null
  stdout: string | Buffer
  stderr: string | Buffer
}

export function healthFromExit(outcome: ExecOutcome): HealthResult {
  const stdout = String(outcome.stdout).trim()
  const stderr = String(outcome.stderr).trim()
  switch (outcome.exitCode) {
    case EXIT_READY:
      return { result: 'success', message: stdout || null }
    case EXIT_STARTING:
      return { result: 'starting', message: stderr || null }
    case EXIT_LOADING:
      // StartOS requires a message for loading; the daemon always prints one.
      return { result: 'loading', message: stderr || 'Upgrading the database.' }
    case EXIT_DISABLED:
      return { result: 'disabled', message: stderr || stdout || null }
    default:
      return {
        result: 'failure',
        message:
          stderr ||
          `The health check ended without a reason (${
            outcome.exitSignal ? `signal ${outcome.exitSignal}` : `exit ${outcome.exitCode}`
          }); read the service logs.`,
      }
  }
}
