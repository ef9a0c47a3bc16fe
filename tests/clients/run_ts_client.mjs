// Drives Keysat's TypeScript client (tests/clients/keysat-client-ts, built by
// tests/test_api_client_ts.py) against a running daemon, call by call, and prints one JSON
// answer per call, so the Python test asserts on exactly what a seller's app would receive.
//
//   node run_ts_client.mjs <built index.js> <base url>   < calls.json
//
// calls.json is a list of {"call": name, "args": [...]}. `name` is a method of the client's
// `Client` (fetchPubkeyPem, validate, ...), or verify / verifyWithFingerprint / verifyWithTime,
// run offline by a `Verifier` made from the PEM in args[0]. An argument {"$ref": i, "field": f}
// is the value answered by call i (its field f when given), so one run can buy and then poll.
// Each answer is {"value": ...} or {"error": {name, code, message, licensingError}}: a call
// that throws is an answer too. Byte arrays are printed as hex.
import { readFileSync } from 'node:fs'
import { pathToFileURL } from 'node:url'

const [built, baseUrl] = process.argv.slice(2)
const client = await import(pathToFileURL(built).href)
const api = new client.Client(baseUrl)
const offline = new Set(['verify', 'verifyWithFingerprint', 'verifyWithTime'])

function resolve(arg, answers) {
  if (arg === null || typeof arg !== 'object' || !('$ref' in arg)) return arg
  const value = answers[arg.$ref].value
  return arg.field === undefined ? value : value[arg.field]
}

async function run(call, args) {
  if (offline.has(call)) {
    const [pem, ...rest] = args
    return new client.Verifier(client.PublicKey.fromPem(pem))[call](...rest)
  }
  if (typeof api[call] !== 'function') throw new Error(`no client method ${call}`)
  return api[call](...args)
}

const answers = []
for (const { call, args = [] } of JSON.parse(readFileSync(0, 'utf8'))) {
  try {
    answers.push({ value: await run(call, args.map((a) => resolve(a, answers))) })
  } catch (e) {
    const licensingError = e instanceof client.LicensingError
    answers.push({ error: { name: e.name, code: e.code, message: e.message, licensingError } })
  }
}
const hex = (_key, v) => (v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)
process.stdout.write(JSON.stringify(answers, hex))
