import { StartSdk } from '@start9labs/start-sdk'
import { manifest } from './manifest'

// The SDK bound to this package's manifest: every helper below is typed by its volumes and
// images, so an unknown volume or image id is a compile error.
export const sdk = StartSdk.of().withManifest(manifest).build(true)
