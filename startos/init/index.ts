import { sdk } from '../sdk'
import { actions } from '../actions/index'
import { restoreInit } from '../backups'
import { setInterfaces } from '../interfaces'
import { versionGraph } from '../versions'

// Install, update, restore and boot: restore a backup first (if this is a restore), then the
// version graph (takes over a 0.3.5 volume), the interfaces, and the actions.
export const init = sdk.setupInit(restoreInit, versionGraph, setInterfaces, actions)

export const uninit = sdk.setupUninit(versionGraph)
