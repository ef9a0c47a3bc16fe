import { sdk } from '../sdk'
import { Field } from './catalogue'

const { InputSpec, Value } = sdk

// One catalogue field as an SDK form value; the daemon checks the same limits again.
function value(field: Field) {
  const common = { name: field.name, description: field.description }
  switch (field.kind) {
    case 'text':
      return Value.text({
        ...common,
        required: field.required,
        default: textDefault(field),
        placeholder: field.placeholder,
        masked: field.masked,
        minLength: field.minLength,
        maxLength: field.maxLength,
      })
    case 'textarea':
      return Value.textarea({
        ...common,
        required: field.required,
        default: textDefault(field),
        placeholder: field.placeholder,
        minLength: field.minLength,
        maxLength: field.maxLength,
      })
    case 'number':
      return Value.number({
        ...common,
        required: field.required,
        default: typeof field.default === 'number' ? field.default : null,
        placeholder: field.placeholder,
        min: field.min,
        max: field.max,
        integer: field.integer,
      })
    case 'toggle':
      return Value.toggle({ ...common, default: field.default === true })
    case 'select':
      return Value.select({ ...common, default: selectDefault(field), values: choices(field) })
  }
}

function textDefault(field: Field): string | null {
  return typeof field.default === 'string' ? field.default : null
}

function choices(field: Field): Record<string, string> {
  if (!field.choices || Object.keys(field.choices).length === 0) {
    throw new Error(`actions.json: select field '${field.id}' has no choices`)
  }
  return field.choices
}

// A select always has a value in the SDK's form; the declared default, else the first choice.
function selectDefault(field: Field): string {
  const values = choices(field)
  if (typeof field.default === 'string' && field.default in values) return field.default
  return Object.keys(values)[0]
}

export function inputSpec(fields: Field[]) {
  return InputSpec.of(Object.fromEntries(fields.map(field => [field.id, value(field)])))
}
