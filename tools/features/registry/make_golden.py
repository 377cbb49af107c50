#!/usr/bin/env python3
"""Regenerate the reference files of internal/features/registry:

    $(scripts/pyenv.sh) tools/features/registry/make_golden.py

Never edit the outputs by hand. Both are deterministic.

temporal/testdata/zones.json -- Python's zoneinfo (the host's IANA
database), independent of Go's time package, gives the local hour and the
ISO weekday (Monday = 1 .. Sunday = 7) of UTC instants in zones with DST,
half-hour DST (Lord_Howe), and 45-minute offsets (Kathmandu, Chatham): every
15 minutes from 3 h before to 3 h after each offset change in 2026, one
second either side of each change, and 40 seeded random instants in
2000..2037 per zone.
    {"zones": {zone: [[unix_s, hour, iso_weekday], ...]}}

derive/testdata/seed_golden.json -- DuckDB runs the seed's
calculate_dynamic_features CASE expressions (as written, DECIMAL literals,
SQL NULL semantics) over a grid of inputs with NULLs:
    {"rows": [[event_count|null, tier|null, opportunity_score|null,
               region|null, user_engagement_score, market_opportunity_score]]}
"""

import datetime as dt
import json
import pathlib
import random
import zoneinfo

import duckdb

ROOT = pathlib.Path(__file__).resolve().parents[3] / "internal" / "features" / "registry"
ZONES = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Chatham",
]


def transitions(zone, year):
    """UTC instants (unix seconds) in year where zone's offset changes."""
    z = zoneinfo.ZoneInfo(zone)
    out = []
    t = int(dt.datetime(year, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    end = int(dt.datetime(year + 1, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    step = 900  # every offset in these zones changes on a quarter hour
    prev = dt.datetime.fromtimestamp(t, z).utcoffset()
    while t < end:
        t += step
        off = dt.datetime.fromtimestamp(t, z).utcoffset()
        if off != prev:
            out.append(t)
            prev = off
    return out


def local(zone, t):
    d = dt.datetime.fromtimestamp(t, zoneinfo.ZoneInfo(zone))
    return [t, d.hour, d.isoweekday()]


def zones():
    rng = random.Random(20260308)
    lo = int(dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc).timestamp())
    hi = int(dt.datetime(2037, 12, 31, tzinfo=dt.timezone.utc).timestamp())
    out = {}
    for zone in ZONES:
        ts = set()
        for tr in transitions(zone, 2026):
            ts.update(range(tr - 3 * 3600, tr + 3 * 3600 + 1, 900))
            ts.update([tr - 1, tr + 1])
        ts.update(rng.randrange(lo, hi) for _ in range(40))
        out[zone] = [local(zone, t) for t in sorted(ts)]
    return {"zones": out}


SEED_SQL = """
SELECT event_count, tier, opportunity_score, region,
    CASE
        WHEN event_count > 10 THEN 0.9
        WHEN event_count > 5 THEN 0.7
        ELSE 0.5
    END *
    CASE
        WHEN tier = 'premium' THEN 1.2
        WHEN tier = 'enterprise' THEN 1.5
        ELSE 1.0
    END AS user_engagement_score,
    COALESCE(opportunity_score, 0.5) *
    CASE
        WHEN region = 'high_growth' THEN 1.3
        ELSE 1.0
    END AS market_opportunity_score
FROM inputs
ORDER BY ALL
"""


def seed():
    con = duckdb.connect()
    con.execute("CREATE TABLE inputs (event_count BIGINT, tier VARCHAR, opportunity_score DOUBLE, region VARCHAR)")
    rows = []
    for ec in [None, 0, 1, 5, 6, 10, 11, 12, 1000]:
        for tier in [None, "premium", "enterprise", "basic", ""]:
            for opp in [None, 0.0, 0.42, 0.8]:
                for region in [None, "high_growth", "low_growth"]:
                    rows.append((ec, tier, opp, region))
    con.executemany("INSERT INTO inputs VALUES (?, ?, ?, ?)", rows)
    out = []
    for ec, tier, opp, region, ues, mos in con.execute(SEED_SQL).fetchall():
        out.append([ec, tier, opp, region, float(ues), float(mos)])
    return {"rows": out}


def write(path, obj):
    path.write_text(json.dumps(obj, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    write(ROOT / "temporal" / "testdata" / "zones.json", zones())
    write(ROOT / "derive" / "testdata" / "seed_golden.json", seed())
