"""The HTTP layer: `app` assembles the aiohttp application, `ops` serves /healthz and /metrics,
`routes` (the licensing API) adds the public and admin routes."""
