import { sdk } from './sdk'
import { apiPort } from './utils'

// The licensing API (public routes for the seller's software, admin routes behind the bearer
// key): one HTTP binding, exported as an API interface.
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
  return [await origin.export([api])]
})
