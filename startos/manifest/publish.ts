import publish from '../publish.json'

// The package's public addresses, set by its publisher in startos/publish.json (and copied to
// the 0.3.5 manifest.yaml by scripts/publish_urls.py). A placeholder (the reserved .invalid
// domain) is never a real address: every load of a bundle built with one says so, so a
// publisher sees it in the build and an owner in the service's logs.
export const urls = {
  packageRepo: publish.packageRepo,
  upstreamRepo: publish.upstreamRepo,
  marketingUrl: publish.marketingUrl,
}

const placeholders = Object.entries({ ...urls, supportSite: publish.supportSite }).filter(
  ([, url]) => new URL(url).hostname.endsWith('.invalid'),
)
if (placeholders.length > 0) {
  console.warn(
    `WARNING: this Keysmith package has placeholder addresses (${placeholders
      .map(([key]) => key)
      .join(', ')}): set them in startos/publish.json before publishing it.`,
  )
}
