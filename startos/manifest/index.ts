import { setupManifest } from '@start9labs/start-sdk'
import { long, short } from './i18n'
import { urls } from './publish'

// The package's identity and shape. The version, release notes and migration ranges come from
// versions/ (buildManifest in ../index.ts joins the two).
export const manifest = setupManifest({
  id: 'keysmith',
  title: 'Keysmith',
  license: 'MIT',
  // Where it is published: startos/publish.json, the one place a publisher sets.
  ...urls,
  donationUrl: null,
  description: { short, long },
  // One volume: the SQLite database, its pre-upgrade backups, the status file.
  volumes: ['main'],
  images: {
    main: {
      // The repository's own Dockerfile, the same image the 0.3.5 package ships.
      source: { dockerBuild: { dockerfile: 'Dockerfile', workdir: '.' } },
      // Only what CI builds and boots (the Makefile's ARCHES; tests/test_s9pk.py checks they
      // agree). aarch64 waits until CI can build and boot it in time: scripts/README.md.
      arch: ['x86_64'],
      // The SDK defaults this to 'x86_64', which would let any architecture install an
      // emulated image; Keysmith ships only what it has built and tested.
      emulateMissingAs: null,
    },
  },
  dependencies: {},
})
