// Read an .s9pk with StartOS's own reader (start-core's S9pk.deserialize, bundled in the SDK):
// it checks the magic, the Ed25519ph signature and every directory's hash; this tool then reads
// every file through the reader's verifiedFileContents, so every file's BLAKE3 is checked too.
//
//   node scripts/s9pk/inspect.mjs FILE                    # the table of contents, in file order
//   node scripts/s9pk/inspect.mjs FILE --json             # the same as JSON (what tests read)
//   node scripts/s9pk/inspect.mjs FILE --manifest         # manifest.json as the reader parsed it
//   node scripts/s9pk/inspect.mjs FILE --extract PATH DEST  # one verified file, written to DEST
//
// Exit 1 with the reader's error when anything it reads fails to verify (--manifest and
// --extract read the signature, the TOCs and the file they print, not every file).
import fs from 'node:fs'
import { S9pk } from './sdk.mjs'

const hex = (bytes) => Buffer.from(bytes).toString('hex')

/** Every entry, depth first in TOC order (with the reader's Entry of each file). */
function walk(dir, prefix, out) {
  for (const [name, entry] of Object.entries(dir.contents)) {
    const path = prefix + name
    const row = { path, type: 'file', size: Number(entry.size), hash: hex(entry.hash) }
    if (entry.contents === null) {
      out.push({ ...row, type: 'missing' })
    } else if (entry.contents.contents instanceof Blob) {
      out.push(Object.defineProperty(row, 'entry', { value: entry }))
    } else {
      out.push({ ...row, path: `${path}/`, type: 'directory' })
      walk(entry.contents, `${path}/`, out)
    }
  }
  return out
}

/** Check every file's BLAKE3 through the reader, smallest first (a bad byte fails fast). */
async function verifyFiles(entries) {
  for (const row of entries.filter((r) => r.entry).sort((a, b) => a.size - b.size)) {
    await row.entry.verifiedFileContents().catch((error) => {
      throw new Error(`${row.path}: ${error.message}`)
    })
  }
}

async function main() {
  const [file, flag, ...rest] = process.argv.slice(2)
  if (!file) throw new Error('usage: inspect.mjs FILE [--json | --manifest | --extract PATH DEST]')
  const s9pk = await S9pk.deserialize(await fs.openAsBlob(file), null)
  const entries = walk(s9pk.archive.contents, '', [])
  // The reader has checked the signature, every TOC and manifest.json; the listing checks every
  // file too, --extract the one file it writes.
  if (flag !== '--manifest' && flag !== '--extract') await verifyFiles(entries)
  if (flag === '--manifest') {
    process.stdout.write(JSON.stringify(s9pk.manifest, null, 2) + '\n')
  } else if (flag === '--extract') {
    const [inner, dest] = rest
    const entry = s9pk.archive.contents.getPath(inner.split('/'))
    if (!entry) throw new Error(`${inner} is not in ${file}`)
    fs.writeFileSync(dest, Buffer.from(await entry.verifiedFileContents()))
  } else if (flag === '--json') {
    const signer = s9pk.archive.signer
    process.stdout.write(JSON.stringify({
      size: s9pk.size,
      pubkey: hex(signer.pubkey),
      rootTocSize: Number(signer.maxSize),
      entries,
    }) + '\n')
  } else {
    console.log(`${file}: ${s9pk.size} bytes, ${s9pk.manifest.id} ${s9pk.manifest.version}, ` +
      `signed by ${hex(s9pk.archive.signer.pubkey)}; every hash and the signature verified`)
    for (const e of entries) {
      console.log(`${e.type.padEnd(9)} ${String(e.size).padStart(11)}  ${e.hash.slice(0, 16)}  ${e.path}`)
    }
  }
}

main().catch((error) => {
  console.error(`s9pk inspect: ${error.message}`)
  process.exit(1)
})
