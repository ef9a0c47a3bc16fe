// Runs the bundled package (javascript/index.js) in node the way StartOS's container runtime
// does, with a test `effects` object, against the real image through podman (see
// bin/start-container). Driven by tests/startos/driver.py: one JSON command per line on stdin,
// one JSON answer per line on the
// descriptor KEYSMITH_TEST_ANSWER_FD (stdout and stderr carry the SDK's and the daemon's logs).
//
// With an image (KEYSMITH_TEST_IMAGE) it must run as root in a private mount namespace
// (`unshare --mount --propagation private`): it mounts a tmpfs on /media and binds the test's
// folders at /media/startos/volumes and /media/startos/backup, the paths the SDK hard-codes,
// so nothing outside the test changes. Without one it only inspects the package (forms,
// init), which needs no container.
'use strict'

const fs = require('fs')
const path = require('path')
const readline = require('readline')
const { execFileSync } = require('child_process')

const env = process.env
const bundle = require(path.resolve(env.KEYSMITH_TEST_BUNDLE))
const SUBCONTAINERS = '/media/startos/subcontainers'
const started = Date.now()

function sandbox() {
  const mount = (...args) => execFileSync('/bin/mount', args)
  mount('-t', 'tmpfs', 'tmpfs', '/media')
  for (const dir of ['volumes', 'backup', 'images', 'subcontainers']) {
    fs.mkdirSync(`/media/startos/${dir}`, { recursive: true })
  }
  mount('--bind', env.KEYSMITH_TEST_VOLUMES, '/media/startos/volumes')
  mount('--bind', env.KEYSMITH_TEST_BACKUP, '/media/startos/backup')
  // What StartOS writes for each image: the SDK reads entrypoint, cmd, user and workdir here.
  fs.writeFileSync('/media/startos/images/main.json', env.KEYSMITH_TEST_IMAGE_META)
  fs.writeFileSync('/media/startos/images/main.env', '')
}

// ---- the effects object ----------------------------------------------------------------

const record = {
  health: [], // every setHealth, as the UI would show it, with ms since the harness started
  actions: {}, // exported action metadata by id
  interfaces: [],
  bindings: [],
  dataVersion: env.KEYSMITH_TEST_DATA_VERSION || null,
}
let guids = 0
const leaveHooks = []

function makeEffects(eventId) {
  const effects = {
    eventId,
    constRetry: () => {},
    child: name => makeEffects(`${eventId}/${name}`),
    onLeaveContext: fn => leaveHooks.push(fn),
    setHealth: async health => {
      record.health.push({ t: Date.now() - started, ...health })
      return null
    },
    setInitProgress: async () => null,
    setBackupProgress: async () => null,
    getDataVersion: async () => record.dataVersion,
    setDataVersion: async ({ version }) => {
      record.dataVersion = version
      return null
    },
    bind: async options => {
      record.bindings.push(options)
      return null
    },
    clearBindings: async () => null,
    exportServiceInterface: async options => {
      record.interfaces.push(options)
      return null
    },
    clearServiceInterfaces: async () => null,
    action: {
      export: async ({ id, metadata }) => {
        record.actions[id] = metadata
        return null
      },
      clear: async () => null,
    },
    subcontainer: {
      createFs: async () => {
        const guid = `${env.KEYSMITH_TEST_RUN}-${++guids}`
        const rootfs = `${SUBCONTAINERS}/${guid}/rootfs`
        fs.mkdirSync(rootfs, { recursive: true })
        return [rootfs, guid]
      },
      destroyFs: async ({ guid }) => {
        // The rootfs holds only what the SDK and the shim wrote (no mounts: bin/mount).
        fs.rmSync(`${SUBCONTAINERS}/${guid}`, { recursive: true, force: true })
        return null
      },
    },
  }
  return effects
}

// ---- commands ----------------------------------------------------------------------------

let daemons = null
let events = 0

// The form's spec as start-core's Action.getInput builds it (actions/setupActions.js), without
// the current values: a form that is prefilled reads them in the image, which only the image
// tests run.
async function formSpec(action, options) {
  const inputSpec =
    typeof action.inputSpec === 'function' ? await action.inputSpec(options) : action.inputSpec
  return inputSpec ? (await inputSpec.build(options)).spec : {}
}

async function runAction(id, input) {
  const action = bundle.actions.get(id)
  if (!action) throw new Error(`no action ${id}`)
  // StartOS asks for the form first (the SDK keeps the spec per event), then runs it.
  const effects = makeEffects(`action-${++events}`)
  const form = await action.getInput({ effects, prefill: null })
  const result = await action.run({ effects, input: input ?? null })
  return { form: form.spec, result }
}

const commands = {
  'main.start': async () => {
    daemons = await (await bundle.main({ effects: makeEffects('main') })).build()
    return {}
  },
  'main.stop': async () => {
    const t0 = Date.now()
    await daemons.term()
    daemons = null
    return { ms: Date.now() - t0 }
  },
  'health.events': async () => ({ events: record.health }),
  'action.run': async ({ id, input }) => runAction(id, input),
  'init': async ({ kind }) => {
    await bundle.init({ effects: makeEffects(`init-${++events}`), kind })
    return { dataVersion: record.dataVersion, actions: record.actions,
             interfaces: record.interfaces, bindings: record.bindings }
  },
  // An install over this package (or an uninstall, target null): StartOS runs its uninit with
  // the target it chose ('host.uninitTarget'), parsed as the container runtime parses it
  // (container-runtime/src/Adapters/RpcListener.ts, `exit`: a version, else a normalized range).
  'uninit': async ({ target }) => {
    await bundle.uninit({ effects: makeEffects(`uninit-${++events}`), target: parseTarget(target) })
    return { dataVersion: record.dataVersion }
  },
  'host.uninitTarget': async args => ({ target: uninitTarget(args) }),
  'data.version': async () => ({ dataVersion: record.dataVersion }),
  // The form StartOS would render for each action, built by the package from actions.json.
  'action.forms': async () => {
    const forms = {}
    for (const id of Object.keys(record.actions)) {
      const effects = makeEffects(`form-${++events}`)
      forms[id] = await formSpec(bundle.actions.get(id), { effects, prefill: null })
    }
    return { forms }
  },
  'backup.create': async () => {
    await bundle.createBackup({ effects: makeEffects(`backup-${++events}`) })
    return {}
  },
}

function parseTarget(target) {
  if (!target) return null
  const { ExtendedVersion, VersionRange } = require('@start9labs/start-sdk')
  try {
    return ExtendedVersion.parse(target)
  } catch {
    return VersionRange.parse(target).normalize()
  }
}

// The target StartOS gives the installed package's uninit when `next` is installed over it:
// a port of start-core src/service/service_map.rs, the `let uninit = ...` block of the install
// (lines 316-347 at start-os 727e4d48ad). The ExVer operations are the SDK's copy of StartOS's
// own (start-core/exver): satisfies, intersects, and the ranges' display.
function uninitTarget({ installed, next, dataVersion }) {
  const { ExtendedVersion, VersionRange } = require('@start9labs/start-sdk')
  if (!dataVersion) return installed.version // ExitParams::target_version(installed version)
  const prevCanMigrateTo = VersionRange.parse(installed.canMigrateTo)
  const nextCanMigrateFrom = VersionRange.parse(next.canMigrateFrom)
  let nextAcceptsDataVer = false
  try {
    nextAcceptsDataVer = ExtendedVersion.parse(dataVersion).satisfies(nextCanMigrateFrom)
  } catch {
    try {
      nextAcceptsDataVer = VersionRange.parse(dataVersion).intersects(nextCanMigrateFrom)
    } catch {
      nextAcceptsDataVer = false
    }
  }
  if (nextAcceptsDataVer) return dataVersion // ExitParams::target_str(data_ver)
  if (ExtendedVersion.parse(next.version).satisfies(prevCanMigrateTo)) return next.version
  return prevCanMigrateTo.and(nextCanMigrateFrom).toString() // target_range(and(..))
}

function answer(obj) {
  fs.writeSync(Number(env.KEYSMITH_TEST_ANSWER_FD), JSON.stringify(obj) + '\n')
}

async function serve() {
  if (env.KEYSMITH_TEST_IMAGE) sandbox()
  answer({ ready: true })
  const lines = readline.createInterface({ input: process.stdin })
  for await (const line of lines) {
    const request = JSON.parse(line)
    try {
      answer({ ok: true, ...(await commands[request.cmd](request)) })
    } catch (error) {
      answer({ ok: false, error: error instanceof Error ? error.message : String(error) })
    }
  }
  if (daemons) await daemons.term()
  for (const hook of leaveHooks) await hook()
  process.exit(0)
}

serve().catch(error => {
  console.error(error)
  process.exit(1)
})
