import { VersionGraph } from '@start9labs/start-sdk'
import { v_0_2_0_0 } from './v0.2.0.0'

// What StartOS does with these ranges when one version is installed over another (start-core
// service/service_map.rs): if the data version satisfies the incoming package's canMigrateFrom,
// the installed package's uninit gets the data version itself as its target (no `down` runs);
// otherwise, if the incoming version is in the installed package's canMigrateTo, that version
// is the target and the installed package's `down` migrations take the data there.
//
// The SDK derives both ranges from this graph: canMigrateFrom is every version that reaches
// the current one (<=0.2.0:0, never a newer one), canMigrateTo every version it reaches down to.
// So a future release that lists this version in `other` and gives its own VersionInfo a
// `down` is downgraded to 0.2.0 by its own `down` (tests/test_startos_host_decisions.py). A
// 0.3.5 package admits any data version (compat.rs), so the downgrade to Keysmith 0.1.0 never
// runs v0.2.0.0's `down`: the owner prepares it with the action 'Prepare a downgrade to
// Keysmith 0.1' (daemon/downgrade.py), and `down` stays for hosts that do call it.
export const versionGraph = VersionGraph.of({
  current: v_0_2_0_0,
  other: [],
})
