import { T } from '@start9labs/start-sdk'
import { sdk } from '../sdk'
import { runInImage } from '../run'
import { daemonCommand } from '../utils'
import { ActionDecl, declarations } from './catalogue'
import { inputSpec } from './form'

// What the daemon prints: the SDK's version "1" action result.
type Result = Extract<T.ActionResult, { version: '1' }>

// Restoring a large database or searching a big shop takes longer than the SDK's default 30 s.
const ACTION_TIMEOUT_MS = 5 * 60_000

// Every action runs `python -m daemon action ID [INPUT-JSON]` in a fresh container of image
// main with the data volume: the same code path as the 0.3.5 package and a shell, and it works
// whether the service runs or not (restore-backup is only-stopped).
async function runAction(
  effects: T.Effects,
  id: string,
  input: Record<string, unknown> | null,
): Promise<Result> {
  const argv = daemonCommand('action', id, ...(input === null ? [] : [JSON.stringify(input)]))
  return parseResult(id, await runInImage(effects, `action-${id}`, argv, ACTION_TIMEOUT_MS))
}

// The form's current values, as the daemon reads them from the data volume (null: an empty form).
type FormValues = Record<string, string | number | boolean | null>

async function prefillInput(effects: T.Effects, id: string): Promise<FormValues | null> {
  const argv = daemonCommand('action', '--prefill', id)
  return JSON.parse(await runInImage(effects, `prefill-${id}`, argv, ACTION_TIMEOUT_MS))
}

// The daemon prints exactly one version "1" result; anything else is a defect worth naming.
function parseResult(id: string, stdout: string): Result {
  let parsed: unknown
  try {
    parsed = JSON.parse(stdout)
  } catch {
    throw new Error(`The action ${id} printed something that is not JSON: ${stdout.slice(0, 200)}`)
  }
  const result = parsed as Partial<Result> | null
  if (!result || result.version !== '1' || typeof result.title !== 'string') {
    throw new Error(`The action ${id} printed a result that is not a version "1" result.`)
  }
  return result as Result
}

function metadata(decl: ActionDecl): Omit<T.ActionMetadata, 'hasInput'> {
  return {
    name: decl.name,
    description: decl.description,
    warning: decl.warning,
    allowedStatuses: decl.allowedStatuses,
    group: decl.group,
    visibility: decl.visibility,
  }
}

function buildAction(decl: ActionDecl) {
  if (decl.input === null) {
    return sdk.Action.withoutInput(decl.id, metadata(decl), ({ effects }) =>
      runAction(effects, decl.id, null),
    )
  }
  return sdk.Action.withInput(
    decl.id,
    metadata(decl),
    inputSpec(decl.input),
    decl.prefill ? ({ effects }) => prefillInput(effects, decl.id) : async () => null,
    ({ effects, input }) => runAction(effects, decl.id, input),
  )
}

// The catalogue's order is the order StartOS lists the actions in.
export const actions = declarations.reduce(
  (all, decl) => all.addAction(buildAction(decl)),
  sdk.Actions.of() as ReturnType<typeof sdk.Actions.of>,
)
