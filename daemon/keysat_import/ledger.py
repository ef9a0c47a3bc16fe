"""Which Keysat databases the import understands: Keysat's sqlx ledger, version by version.

Keysat (keysat-xyz/keysat, licensing-service/migrations) migrates its SQLite file with sqlx,
which records each applied migration in `_sqlx_migrations` with the SHA-384 of its file. The
import reads a database only when every recorded migration is one of Keysat's 25 (as of
release 0.2.0:63) with a checksum one of Keysat's released texts had, applied successfully and
without a gap: the column meanings below are those texts' meanings, and nothing else.
"""

from __future__ import annotations

import sqlite3

from daemon.keysat_import.errors import Refused

# Each migration: "version description" (as sqlx records it), then the SHA-384 of every text
# Keysat released for it, one a line. Keysat shipped 0009 twice (v0.1.0:40, then its hotfix in
# :41); both leave the same schema.
_RELEASED = """
1 initial
95af4d255acd4509d59237327acc888638d7811ebed1118ad5df10beee345dd00393ce485e10ff62f4183d9243e37c6a
2 btcpay config
688dd06773334eacfec6dd26e67eeb01fe76376073ad93efd42dcb7d06aaccdbd0ad4044b03a96d361034cf7c5b9f68c
3 expanded features
c31fa260a6d51b815f7609f4b4b909ccdc5518a59b13d9480e339f2ae9dba632fa73c731677830c11e703afed5d605c0
4 discount codes
6a02fdf5b085d65056e8bab0698f97e49e7564c85aced5bf90b7ad396ad55c51d00b9c3a1f78ed2582a1034a3f7a9623
5 settings
00995b08363ea7abcff2b9c329232dcd1ceff20d5939512f34fb454a8579106d810ce9ca8010f45839862b2544d6de67
6 policy tip recipient
68723916b636d60a3e7ab1ba6dd12f7a9aeda634600937a5f5eddb3a3181e820ba9b75fcbed9e493a6c222388bb8ae7b
7 tiered pricing
90f0e9bb84df4f76277357ecc6023ceaaee8a01ecb8f2a63ec8c1aa6e854375881f4d979dc6d2e0c3888de4e18cc5b6a
8 web sessions
806e20bf082eb38f038cc6c6e7e3d7250655fb75ef48cf4034f75cdb27a4e99c479ee1b4e9a1af4a921bf05cc11c8f7a
9 discount codes set price
227845dfaca45f251d90841475d9a44cdd4f377651860ad78b064434ef384cb2274b60e8c156c2e97a9d404bac9f6a7a
b5b919676047bd428d772249470ac927dc020ee31ae2d44ea7899b05e6494a173066cf20b993c64bc5f12b8027fce32f
10 multi currency
1911bc1b0ff00a1d5faa204b1c82e0ca0e48cb10d4c5157a67c7adb02c81f7f0e016a9eab23c16aa183ececa5230074d
11 subscriptions
d13716abb3fa0ad9cdd4e2484e6072a2e5b54e76b4ba5682bddd4a6f0af26a113e62096c385735c194f8f4dd09efd4c9
12 zaprite config
bc6bc3b36fc64df74344ae202078ada1d862d0d99ac553dfcab2f5e6e19e732c28595b7ebaede201348515f718cbde1f
13 tier upgrades
61d7add6517f680d6e75602d94d941813f25b1945a15111f2533f5e16f88c3c65b0c06b03d5889b97735c781e34d6032
14 product entitlements catalog
843bc837098e211c76febbb422a55b7f2a2451e4af20ca8de879ef39f6a57aff96290f20215dcfe1076c67af550f8310
15 policy archive
c3bab9a4d2fd0767d73982724c106461ba06ab22e2d94f7593db702839813962d622fdf1646bbb62e9924f7c22f43a9c
16 scoped api keys
33035f284e985688251a2a6f48dd79a23db343dff10db97db8401cde0ccb50ca781aa46833c428e2442fd9e63f016722
17 featured discount codes
f248bae4d0f699fd7eed27fea4b08a579f6b4619d3e0b044c96702c6b472a6bd0d5fd873d7c9d919ba9386472c6208f0
18 discount codes multi policy
a7fa35d59bea2fc42220bfad26efbbb56d03b8e296671c4d95ddb37c835864670e88c2ebf88066b0883759b9e568f416
19 zaprite saved profiles
798e9ef2956c188c11e2d95d427808f0957fb7519b89c29c3d9971a5524e177ddb3d703f8bf1b4e8034abfaf23c02552
20 merchant profiles
cff3081f8f51aef95d4b15f701f58a274be0073b76799106434158ad1550bf303f38a54759071077af9a75bed4c49958
21 invoice provider link
f50cf7b8fce7c177913cb9606a6146d5fac9c4f345884027f716c4156d032b88c13f82b424cdd5574d74aad52a1aa54e
22 btcpay state profile
82069cd7d7b3b49b9e58258d96efe002261312e88ead31194cd59bc287d29aef683b247c5726d57f2c1c5b07d755e02c
23 merchant onboard role
4b80351567898c64030e56285a607d3ae0127c3394ef88e8c03257f0ae60139c276dbc7b415411758d449d1d959e6cb0
24 scoped key extra scopes
ee78f1f00b360d6150850bb5c05eff1757643abc7116b94a756609b26210329dbe2eba40668dfdb6bf505f5433b2aab2
25 authorize state scoped initiator
a6452996d0cf41c3138530bf104d154cfc5b5a345988e1f43d3344046d0e47732f3181579ab6fae905da4a5a4b3aabcf
"""


def _parse(text: str) -> dict[int, tuple[str, tuple[str, ...]]]:
    """version -> (description, checksums in hex)."""
    ledger: dict[int, tuple[str, tuple[str, ...]]] = {}
    version = 0
    for line in text.split("\n"):
        if line[:1].isdigit() and " " in line:
            number, description = line.split(" ", 1)
            version = int(number)
            ledger[version] = (description, ())
        elif line:
            description, checksums = ledger[version]
            ledger[version] = (description, (*checksums, line))
    return ledger


KEYSAT_MIGRATIONS = _parse(_RELEASED)
NEWEST = max(KEYSAT_MIGRATIONS)
# The first version whose schema the import reads (policies, machines, expiry and grace).
OLDEST = 3


def keysat_version(conn: sqlite3.Connection, name: str) -> int:
    """The Keysat schema version of this database, or Refused saying what is not understood."""
    if not _has_table(conn, "_sqlx_migrations") or not _has_table(conn, "server_keys"):
        raise Refused(
            f"{name} is not a Keysat database: it has no Keysat migration ledger "
            "(_sqlx_migrations) and issuer key (server_keys)"
        )
    rows = conn.execute(
        "SELECT version, description, success, hex(checksum) FROM _sqlx_migrations ORDER BY 1"
    ).fetchall()
    for index, (version, description, success, checksum) in enumerate(rows, start=1):
        _check_row(name, index, version, description, success, checksum.lower())
    if len(rows) < OLDEST:
        raise Refused(
            f"{name} is at Keysat migration {len(rows)}; the import reads Keysat databases from "
            f"migration {OLDEST} on. Start Keysat 0.2.0:63 on it once to migrate it"
        )
    return len(rows)


def _check_row(
    name: str, index: int, version: int, description: str, success: int, checksum: str
) -> None:
    known = KEYSAT_MIGRATIONS.get(version)
    if known is None:
        raise Refused(
            f"{name} records Keysat migration {version} ({description!r}), which this Keysmith "
            f"does not know (it knows Keysat's migrations 1 to {NEWEST}, Keysat 0.2.0:63): a "
            "newer Keysat, or not Keysat at all"
        )
    if version != index:
        raise Refused(f"{name}'s Keysat ledger skips migration {index}: it records {version} next")
    if not success:
        raise Refused(f"{name}'s Keysat migration {version} is recorded as failed")
    if description != known[0] or checksum not in known[1]:
        raise Refused(
            f"{name}'s Keysat migration {version} ({description!r}) has a checksum no released "
            "Keysat text has: its schema was changed by hand or by an unreleased build"
        )


def _has_table(conn: sqlite3.Connection, table: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
    ).fetchone()
    return row is not None
