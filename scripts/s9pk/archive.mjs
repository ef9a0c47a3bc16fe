// The s9pk v2 container: a signed Merkle archive, written the way start-core writes it
// (start-os shared-libs/crates/start-core/src/s9pk/: v2/specv2.md, v2/mod.rs,
// merkle_archive/{mod,directory_contents,file_contents,write_queue,varint}.rs).
//
//   magic 3b 3b 02 | pubkey 32 | signature 64 | root sighash 32 | root TOC size u64
//   | root TOC position u64 | root TOC size u64 | root TOC | bodies, breadth first
//
// A TOC is a varint count, then per entry: name (varint length + UTF-8), hash 32, size u64,
// type (1 file: position u64; 2 directory: position u64, TOC size u64). Entries are written
// directories first, then by name; bodies follow in the order their entries were written.
// A directory's hash (its sighash) is BLAKE3 of its TOC with every entry marked missing (type 0,
// no position), sorted by name. The signature is Ed25519ph, context "s9pk", over
// (root sighash || root TOC size as u64 big-endian).
import fs from 'node:fs'
import { blake3, ed25519ph } from './sdk.mjs'

const MAGIC_AND_VERSION = Buffer.from([0x3b, 0x3b, 0x02])
const SIG_CONTEXT = 's9pk'
// magic + pubkey + signature + sighash + max size + the root directory's position and size
const ROOT_TOC_POSITION = 3 + 32 + 64 + 32 + 8 + 16
const READ_CHUNK = 1 << 20

/** A file entry whose bytes are in memory. */
export function bufferFile(data) {
  const bytes = Buffer.from(data)
  return { kind: 'file', size: BigInt(bytes.length), hash: blake3(bytes), read: () => [bytes] }
}

/** A file entry read from disk (hashed now, streamed into the archive later). */
export function diskFile(filePath) {
  const hasher = blake3.create({})
  let size = 0n
  for (const chunk of readChunks(filePath)) {
    hasher.update(chunk)
    size += BigInt(chunk.length)
  }
  return { kind: 'file', size, hash: hasher.digest(), read: () => readChunks(filePath) }
}

function* readChunks(filePath) {
  const fd = fs.openSync(filePath, 'r')
  try {
    const buffer = Buffer.alloc(READ_CHUNK)
    for (;;) {
      const n = fs.readSync(fd, buffer, 0, READ_CHUNK, null)
      if (n === 0) return
      yield buffer.subarray(0, n)
    }
  } finally {
    fs.closeSync(fd)
  }
}

/** A directory entry from an object of name -> entry (files or directories). */
export function directory(entries) {
  const dir = { kind: 'dir', entries: new Map(Object.entries(entries)) }
  dir.size = tocSize(dir)
  dir.hash = sighash(dir)
  return dir
}

const byName = ([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b))

/** The order serialize_toc writes entries in: directories first, then by name (stable sort). */
function tocOrder(dir) {
  const sorted = [...dir.entries].sort(byName)
  return [...sorted.filter(([, e]) => e.kind === 'dir'), ...sorted.filter(([, e]) => e.kind !== 'dir')]
}

function varint(n) {
  const out = []
  let v = BigInt(n)
  do {
    let byte = Number(v & 0x7fn)
    v >>= 7n
    if (v > 0n) byte |= 0x80
    out.push(byte)
  } while (v > 0n)
  return Buffer.from(out)
}

function varstring(s) {
  const bytes = Buffer.from(s, 'utf8')
  return Buffer.concat([varint(bytes.length), bytes])
}

function u64(n) {
  const b = Buffer.alloc(8)
  b.writeBigUInt64BE(BigInt(n))
  return b
}

function tocSize(dir) {
  let size = varint(dir.entries.size).length
  for (const [name, entry] of dir.entries) {
    size += varstring(name).length + 32 + 8 + 1 + (entry.kind === 'dir' ? 16 : 8)
  }
  return BigInt(size)
}

function sighash(dir) {
  const hasher = blake3.create({})
  hasher.update(varint(dir.entries.size))
  for (const [name, entry] of [...dir.entries].sort(byName)) {
    hasher.update(varstring(name))
    hasher.update(entry.hash)
    hasher.update(u64(entry.size))
    hasher.update(Buffer.from([0]))
  }
  return hasher.digest()
}

/** The TOC bytes of `dir`, with each entry's body queued at the next free position. */
function serializeToc(dir, queue) {
  const parts = [varint(dir.entries.size)]
  for (const [name, entry] of tocOrder(dir)) {
    const position = queue.add(entry)
    parts.push(varstring(name), Buffer.from(entry.hash), u64(entry.size))
    if (entry.kind === 'dir') parts.push(Buffer.from([2]), u64(position), u64(entry.size))
    else parts.push(Buffer.from([1]), u64(position))
  }
  return Buffer.concat(parts)
}

/**
 * Write `root` (a directory()) signed with the 32-byte Ed25519 secret `secretKey` to `outPath`.
 * Returns { size, pubkey, sighash }.
 */
export function writeArchive(outPath, root, secretKey) {
  const commitment = Buffer.concat([Buffer.from(root.hash), u64(root.size)])
  const signature = ed25519ph.sign(commitment, secretKey, {
    context: Buffer.from(SIG_CONTEXT),
  })
  const pubkey = ed25519ph.getPublicKey(secretKey)
  const pending = []
  const queue = {
    next: BigInt(ROOT_TOC_POSITION) + root.size,
    add(entry) {
      const position = this.next
      this.next += entry.size
      pending.push(entry)
      return position
    },
  }
  const fd = fs.openSync(outPath, 'w')
  let written = 0
  const write = (bytes) => {
    fs.writeSync(fd, bytes)
    written += bytes.length
  }
  try {
    write(MAGIC_AND_VERSION)
    write(Buffer.from(pubkey))
    write(Buffer.from(signature))
    write(commitment)
    write(Buffer.concat([u64(ROOT_TOC_POSITION), u64(root.size)]))
    write(serializeToc(root, queue))
    while (pending.length > 0) {
      const entry = pending.shift()
      if (entry.kind === 'dir') write(serializeToc(entry, queue))
      else for (const chunk of entry.read()) write(chunk)
    }
  } finally {
    fs.closeSync(fd)
  }
  if (BigInt(written) !== queue.next) {
    throw new Error(`s9pk writer: wrote ${written} bytes but laid out ${queue.next}`)
  }
  return { size: written, pubkey, sighash: root.hash }
}
