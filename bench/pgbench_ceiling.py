"""What the PostgreSQL server itself commits per second, measured with ``pgbench``: the
ceiling the job queues work under (each of their commits waits for the same WAL flush).

- ``INSERT, 1 client``: single-row ``INSERT`` transactions (autocommit) from one client, into
  a table with a ``bigserial`` primary key;
- ``UPDATE, 10 clients``: single-row ``UPDATE`` transactions from ten clients, each on a
  random row of 10,000 (so they seldom wait for each other's row locks).

Each runs ``seconds`` in a scratch database of its own, dropped afterwards.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile

import psycopg
from common import fresh_pg_database

SCRIPTS = {
    "INSERT, 1 client": (1, "INSERT INTO ceiling_insert (v) VALUES (1);\n"),
    "UPDATE, 10 clients": (
        10,
        "\\set id random(1, 10000)\nUPDATE ceiling_update SET v = v + 1 WHERE id = :id;\n",
    ),
}


def find_pgbench() -> str | None:
    """``pgbench`` on PATH, or in a Debian-style /usr/lib/postgresql/<version>/bin."""
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))
    return candidates[-1] if candidates else None


def measure(pgbench: str, seconds: int) -> dict[str, float]:
    """Transactions per second of each script in :data:`SCRIPTS`."""
    results: dict[str, float] = {}
    with fresh_pg_database("pgbench") as url, tempfile.TemporaryDirectory() as folder:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE ceiling_insert (id bigserial PRIMARY KEY, v integer)")
            conn.execute("CREATE TABLE ceiling_update (id integer PRIMARY KEY, v integer)")
            conn.execute("INSERT INTO ceiling_update SELECT g, 0 FROM generate_series(1, 10000) g")
            conn.execute("VACUUM ANALYZE")
        for name, (clients, script) in SCRIPTS.items():
            path = os.path.join(folder, "script.sql")
            with open(path, "w") as file:
                file.write(script)
            command = [pgbench, "-n", "-c", str(clients), "-j", str(min(clients, 2))]
            command += ["-T", str(seconds), "-f", path, url]
            done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
            found = re.search(r"^tps = ([\d.]+)", done.stdout, re.MULTILINE)
            if done.returncode != 0 or found is None:
                lines = (done.stderr or done.stdout).strip().splitlines()
                raise RuntimeError(f"pgbench failed: {lines[-1] if lines else done.returncode}")
            results[name] = float(found.group(1))
    return results
