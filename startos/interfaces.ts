import { sdk } from './sdk'
import { apiPort } from './utils'

// One HTTP binding, exported twice: the licensing API (public routes for the seller's
// software, admin routes behind the bearer key), and the operator's web console at /admin/ on
// the same port (the daemon serves both; the console has its own password).
export const setInterfaces = sdk.setupInterfaces(async ({ effects }) => {
  const origin = await sdk.MultiHost.of(effects, 'main').bindPort(apiPort, {
    protocol: 'http',
  })
  const api = sdk.createInterface(effects, {
    name: 'Licensing API',
    id: 'api',
    description:
      'The licensing API: validate, redeem and machine routes for your software, and the ' +
      'admin routes (bearer key, see the action "Admin credentials").',
    type: 'api',
    masked: false,
    schemeOverride: null,
    username: null,
    path: '',
    query: {},
  })
  const webConsole = sdk.createInterface(effects, {
    name: 'Console',
    id: 'console',
    description:
      'The web console: products, policies, licenses and discount codes, the audit log, and ' +
      'every database upgrade with its self-heals and backups. Set its password first with ' +
      'the action "Set console password".',
    type: 'ui',
    masked: false,
    schemeOverride: null,
    username: null,
    path: '/admin/',
    query: {},
  })
  return [await origin.export([api, webConsole])]
})
