// Marketplace texts (s9pk v2 limits: short 160, long 5000 characters; tests check them).
// SDK 2.0.9 removed the manifest's `alerts`, so the warning an uninstall alert used to carry is
// the long description's last paragraph.

export const short = {
  en_US:
    'Sell and verify software licenses from your own server, with keys that verify offline.',
}

// Paragraphs, each one line: the marketplace wraps them itself.
export const long = {
  en_US: [
    'Keysmith is a self-hosted software-licensing server. Create products and licensing ' +
      'policies, issue Ed25519-signed license keys that your software verifies offline, track ' +
      'machine activations and seats, and offer discount codes. Your software talks to it ' +
      'with the Keysat-compatible client library; you run the business from the StartOS ' +
      'actions (issue, revoke, suspend and search licenses, machines, discount codes, audit log).',
    'Upgrades are built to be safe: before any migration runs, Keysmith backs up the database, ' +
      'heals harmless differences in old migration files with proof, and refuses anything it ' +
      'cannot prove safe without changing a thing. The service then stays up and its health ' +
      'check says what happened and what to do.',
    'Uninstalling deletes the data volume: the issuer signing key and every license record go ' +
      'with it, and keys already issued can no longer be checked online. Take a StartOS backup ' +
      'first.',
  ].join('\n\n'),
}
