"""The operator's web console under /admin/: server-rendered pages over the same `Licensing`
object the JSON API uses (through `ops`), and the migrator's history (through `history`).

Mounted by `daemon.api.app.create_app` in every state: while serving it offers the seller's
work; in safe mode (a blocked or failed upgrade) it still shows the Overview and the Upgrades
page, which is when the operator needs them most, and writes nothing. Kept free of imports:
the app reads PREFIX for every request, and loads `pages` only when it mounts the console.
"""

PREFIX = "/admin"
