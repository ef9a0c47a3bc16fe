// The maintained libraries this writer and its inspector use, resolved from where StartOS's own
// s9pk reader (start-core, bundled in the SDK) resolves them: the same @noble/hashes (BLAKE3)
// and @noble/curves (Ed25519ph) versions that verify the file also produce it.
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import path from 'node:path'

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..')
const startCore = path.join(
  repo, 'node_modules', '@start9labs', 'start-sdk', 'node_modules', '@start9labs', 'start-core',
)
const requireCore = createRequire(path.join(startCore, 'package.json'))

export const { blake3 } = requireCore('@noble/hashes/blake3')
export const { ed25519ph } = requireCore('@noble/curves/ed25519')
/** start-core's S9pk class: StartOS's reader (`S9pk.deserialize(blob, commitment)`). */
export const { S9pk } = requireCore('./s9pk')
export const REPO = repo
