import { T } from '@start9labs/start-sdk'
import catalogue from '../actions.json'

// The shape of startos/actions.json, written by `python -m daemon action --catalogue`: the
// daemon declares every action once, and this package only turns the declarations into SDK
// actions (actions/index.ts). Nothing about a particular action is known on this side.

export type FieldKind = 'text' | 'textarea' | 'number' | 'toggle' | 'select'

export type Field = {
  id: string
  kind: FieldKind
  name: string
  description: string
  required: boolean
  default: string | number | boolean | null
  placeholder: string | null
  masked: boolean
  min: number | null
  max: number | null
  integer: boolean
  choices: Record<string, string> | null
  minLength: number | null
  maxLength: number | null
}

export type ActionDecl = {
  id: string
  name: string
  description: string
  warning: string | null
  allowedStatuses: T.AllowedStatuses
  group: string | null
  visibility: 'enabled'
  input: Field[] | null
  // The daemon prints the form's current values (`action --prefill ID`) to fill it in.
  prefill: boolean
}

// The JSON import is typed by its contents (literal unions are widened to string), so the
// declared shape is asserted here once; tests check the file against the same rules.
export const declarations = catalogue as ActionDecl[]
