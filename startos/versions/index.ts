import { VersionGraph } from '@start9labs/start-sdk'
import { v_0_2_0_0 } from './v0.2.0.0'

export const versionGraph = VersionGraph.of({
  current: v_0_2_0_0,
  other: [],
})
