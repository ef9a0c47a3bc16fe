import { sdk } from './sdk'

// The daemon listens here inside its container (KEYSMITH_BIND in the Dockerfile).
export const apiPort = 8080

// Where every container of image main sees volume main (KEYSMITH_DB_PATH is /data/keysmith.db).
export const dataMounts = sdk.Mounts.of().mountVolume({
  volumeId: 'main',
  subpath: null,
  mountpoint: '/data',
  readonly: false,
})

// `python -m daemon ...` in image main; the entrypoint is not used, so the argv is exact.
export const daemonCommand = (...args: string[]): string[] => ['python', '-m', 'daemon', ...args]
