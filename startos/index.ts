import { buildManifest } from '@start9labs/start-sdk'
import { manifest as sdkManifest } from './manifest'
import { versionGraph } from './versions'

// What StartOS (and `start-cli s9pk pack`) reads from the bundle.
// './actions' alone would resolve to actions.json in the bundler (files before folders).
export { actions } from './actions/index'
export { createBackup } from './backups'
export { init, uninit } from './init'
export { main } from './main'
export const manifest = buildManifest(versionGraph, sdkManifest)
