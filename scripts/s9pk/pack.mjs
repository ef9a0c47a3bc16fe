// Pack <id>_<arch>.s9pk without start-cli: the same contents `start-cli s9pk pack --arch=ARCH`
// puts there (start-core src/s9pk/v2/pack.rs), written by ./archive.mjs.
//
//   node scripts/s9pk/pack.mjs --arch x86_64 --image-tag TAG -o keysmith_x86_64.s9pk [--key PEM]
//
// Run from the package folder (icon.*, LICENSE*, instructions.md, assets/, javascript/), with
// podman's settings in the environment (scripts/s9pk/build.sh sources scripts/oci-env.sh).
// TAG is the image already built for ARCH from the Dockerfile (pack.rs builds it itself).
// Signing key: --key, else the nearest .startos/build-key walking up (start-cli's workspace key),
// else a key made for this build only, kept in memory and never written (fine for CI, not for
// a release: the marketplace trusts a packager by the key).
import { execFileSync, spawnSync } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseArgs } from 'node:util'
import { bufferFile, directory, diskFile, writeArchive } from './archive.mjs'

const PLATFORMS = { x86_64: 'linux/amd64', aarch64: 'linux/arm64' }

function fail(message) {
  console.error(`s9pk pack: ${message}`)
  process.exit(1)
}

function run(cmd, args, options = {}) {
  const done = spawnSync(cmd, args, { encoding: 'buffer', maxBuffer: 1 << 26, ...options })
  if (done.error) fail(`${cmd} could not run: ${done.error.message}`)
  if (done.status !== 0) {
    fail(`${cmd} ${args.join(' ')} exited ${done.status}: ${String(done.stderr).trim()}`)
  }
  return done.stdout
}

/** The one root file whose stem is `stem` (case-insensitive), as pack.rs finds icon and license. */
function rootFile(stem) {
  const found = fs.readdirSync('.').filter((n) => path.parse(n).name.toLowerCase() === stem)
  if (found.length !== 1) fail(`expected exactly one ${stem}.* in ${process.cwd()}, found ${found.length}`)
  return found[0]
}

/** manifest.json as pack.rs makes it: the bundle's manifest, then the fields pack fills in. */
function packedManifest(javascriptDir, arch) {
  const script = `console.log(JSON.stringify(require('${path.resolve(javascriptDir)}/index.js').manifest))`
  // stderr passes through: the package's own warnings (a placeholder URL) reach the packager.
  const manifest = JSON.parse(
    run('node', ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] }).toString(),
  )
  manifest.gitHash = gitHash() ?? manifest.gitHash
  const supported = manifest.hardwareRequirements?.arch
  const arches = supported ? [arch].filter((a) => supported.includes(a)) : [arch]
  if (arches.length === 0) fail(`none of the requested architectures (${arch}) are supported`)
  for (const [id, image] of Object.entries(manifest.images)) {
    const kept = image.arch.filter((a) => arches.includes(a))
    if (kept.length > 0) image.arch = kept
    else if (image.emulateMissingAs) image.arch = [image.emulateMissingAs]
    else fail(`image ${id} is not available for ${arch} and has no emulateMissingAs`)
    image.source = 'packed'
  }
  manifest.hardwareRequirements = { ...manifest.hardwareRequirements, arch: arches }
  return manifest
}

/** `git rev-parse HEAD`, suffixed -modified for a dirty tree (s9pk/git_hash.rs); null outside git. */
function gitHash() {
  const head = spawnSync('git', ['rev-parse', 'HEAD'], { encoding: 'utf8' })
  if (head.status !== 0) return null
  const clean = spawnSync('git', ['diff-index', '--quiet', 'HEAD', '--']).status === 0
  return head.stdout.trim() + (clean ? '' : '-modified')
}

function squashDir(dir, tmp, name) {
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
    fail(`${dir}/ is missing: pack squashes it into ${name}`)
  }
  const dest = path.join(tmp, name)
  run('mksquashfs', [dir, dest, '-quiet'])
  return diskFile(dest)
}

/** images/<arch>/main.{json,env,squashfs} from the image, as pack.rs's DockerTag source does. */
function imageEntries(tag, arch, tmp) {
  const container = run('podman', ['create', `--platform=${PLATFORMS[arch]}`, tag]).toString().trim()
  try {
    const config = JSON.parse(
      run('podman', ['container', 'inspect', '--format', '{{json .Config}}', container]).toString(),
    )
    // pack.rs reads Entrypoint and Cmd as string lists, as docker and podman 5 print them;
    // podman 4 prints the container's as one string, so take the image's lists then.
    const image = JSON.parse(
      run('podman', ['image', 'inspect', '--format', '{{json .Config}}', tag]).toString(),
    )
    const list = (field) =>
      (typeof config[field] === 'string' ? image[field] : config[field]) ?? null
    const metadata = {
      workdir: config.WorkingDir || '/',
      user: config.User || 'root',
      entrypoint: list('Entrypoint'),
      cmd: list('Cmd'),
    }
    const squashfs = path.join(tmp, `${arch}.squashfs`)
    const exported = spawnSync('sh', ['-c', 'podman export "$1" | tar2sqfs -q "$2"', 'export', container, squashfs])
    if (exported.status !== 0) fail(`podman export | tar2sqfs failed: ${String(exported.stderr).trim()}`)
    return {
      'main.json': bufferFile(JSON.stringify(metadata)),
      'main.env': bufferFile((config.Env ?? []).join('\n')),
      'main.squashfs': diskFile(squashfs),
    }
  } finally {
    run('podman', ['rm', container])
  }
}

/** The 32-byte Ed25519 secret from a PKCS#8 PEM (the format start-cli writes its keys in). */
function secretFromPem(pemPath) {
  const jwk = crypto.createPrivateKey(fs.readFileSync(pemPath)).export({ format: 'jwk' })
  if (jwk.crv !== 'Ed25519') fail(`${pemPath} is not an Ed25519 key`)
  return Buffer.from(jwk.d, 'base64url')
}

function workspaceKey() {
  for (let dir = process.cwd(); ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, '.startos', 'build-key')
    if (fs.existsSync(candidate)) return candidate
    if (path.dirname(dir) === dir) return null
  }
}

function signingKey(keyPath) {
  const chosen = keyPath ?? workspaceKey()
  if (chosen) {
    console.error(`s9pk pack: signing with ${chosen}`)
    return secretFromPem(chosen)
  }
  console.error(
    's9pk pack: no .startos/build-key here or above: signing with a key made for this build ' +
      'only (not kept). A release must be signed with the packager\'s key (scripts/README.md).',
  )
  const { privateKey } = crypto.generateKeyPairSync('ed25519')
  return Buffer.from(privateKey.export({ format: 'jwk' }).d, 'base64url')
}

function main() {
  const { values } = parseArgs({
    options: {
      arch: { type: 'string' },
      'image-tag': { type: 'string' },
      output: { type: 'string', short: 'o' },
      key: { type: 'string' },
      javascript: { type: 'string', default: 'javascript' },
      assets: { type: 'string', default: 'assets' },
    },
  })
  const { arch, output } = values
  if (!PLATFORMS[arch]) fail(`--arch must be one of ${Object.keys(PLATFORMS).join(', ')}`)
  if (!values['image-tag'] || !output) fail('--image-tag and -o are required')
  if (!fs.existsSync('instructions.md')) fail('instructions.md not found at the package root')
  const secret = signingKey(values.key)
  const manifest = packedManifest(values.javascript, arch)
  if (Object.keys(manifest.images).join() !== 'main') fail('--image-tag packs one image, main')
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 's9pk-pack-'))
  try {
    const icon = rootFile('icon')
    const root = directory({
      'manifest.json': bufferFile(JSON.stringify(manifest)),
      [`icon${path.extname(icon)}`]: diskFile(icon),
      'LICENSE.md': diskFile(rootFile('license')),
      'instructions.md': diskFile('instructions.md'),
      'javascript.squashfs': squashDir(values.javascript, tmp, 'javascript.squashfs'),
      'assets.squashfs': squashDir(values.assets, tmp, 'assets.squashfs'),
      images: directory(
        Object.fromEntries(
          manifest.images.main.arch.map((a) => [a, directory(imageEntries(values['image-tag'], a, tmp))]),
        ),
      ),
    })
    const partial = `${output}.partial`
    const written = writeArchive(partial, root, secret)
    fs.renameSync(partial, output)
    const pubkey = Buffer.from(written.pubkey).toString('base64')
    console.error(`s9pk pack: wrote ${output} (${written.size} bytes, signer ${pubkey})`)
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true })
  }
}

main()
