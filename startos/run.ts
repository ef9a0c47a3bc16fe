import { T } from '@start9labs/start-sdk'
import { sdk } from './sdk'
import { dataMounts } from './utils'

// Run one daemon command in a fresh container of image main with volume main at /data (it works
// whether the service is running or stopped) and return its stdout. A non-zero exit throws an
// Error whose message is the command's stderr: the daemon writes an operator message there,
// never a traceback, and StartOS shows a thrown error's message as the action's failure.
export async function runInImage(
  effects: T.Effects,
  name: string,
  argv: string[],
  timeoutMs: number,
): Promise<string> {
  const image = { imageId: 'main' } as const
  const done = await sdk.SubContainer.withTemp(effects, image, dataMounts, name, sub =>
    sub.exec(argv, undefined, timeoutMs),
  )
  if (done.exitCode !== 0) {
    const stderr = String(done.stderr).trim()
    const how = done.exitSignal ? `was stopped by ${done.exitSignal}` : `exited ${done.exitCode}`
    throw new Error(stderr || `Keysmith's ${name} ${how} without a message; read the logs.`)
  }
  return String(done.stdout)
}
