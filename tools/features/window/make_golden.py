#!/usr/bin/env python3
"""Regenerate internal/features/window/testdata/golden.json, the DuckDB
reference that internal/features/window's golden test compares against.

    $(scripts/pyenv.sh) tools/features/window/make_golden.py

Run it from anywhere; it writes beside the Go package. The output is
deterministic for a given seed and DuckDB version (pinned in
tools/requirements.txt). Never edit the JSON by hand.

The event table has a few entities, integer-second timestamps over about
three hours with many ties (several events in the same second), values with
two decimals, and arrival order (seq) shuffled against time, so the Go test
also exercises out-of-order inserts. Some timestamps sit exactly 60, 300 and
3600 seconds after another one, so the window bounds (included at both
ends) matter; one entity has runs of equal values, so stddev is 0 and the
z-score null; isolated events give stddev null (n = 1).

For every event and every W in 1m, 5m, 1h DuckDB computes, per entity,
ordered by ts only (so ties are peers, as in PostgreSQL):

    count(*), sum(v), avg(v), min(v), max(v), stddev_samp(v)
        OVER (PARTITION BY entity ORDER BY ts
              RANGE BETWEEN INTERVAL W PRECEDING AND CURRENT ROW)
    (v - avg) / NULLIF(stddev_samp, 0)

Output: {"windows_s": [60, 300, 3600],
         "events": [[entity, ts_s, seq, v, [[count, sum, avg, min, max,
                     stddev, z] per window]], ...]}
with rows ordered by (entity, ts, seq); null where SQL gives NULL.
"""

import json
import pathlib
import random

import duckdb

OUT = pathlib.Path(__file__).resolve().parents[3] / "internal" / "features" / "window" / "testdata" / "golden.json"
SEED = 20240611
WINDOWS_S = [60, 300, 3600]
BASE = 1_700_000_000  # 2023-11-14T22:13:20Z


def make_events(rng):
    events = []  # (entity, ts, v)
    for entity in ["a", "b", "c"]:
        # Anchor seconds spread over ~3h with dense clusters, then points at
        # exactly +60, +300, +3600 s of some anchors (window bounds).
        anchors = sorted(rng.sample(range(0, 3 * 3600), 18))
        cluster = [anchors[3] + d for d in (0, 1, 2, 5, 30, 59)]
        bounds = [anchors[i] + w for i, w in ((1, 60), (2, 300), (4, 3600), (6, 60), (8, 299), (9, 301))]
        seconds = anchors + cluster + bounds
        for _ in range(64):
            t = rng.choice(seconds)  # many ties
            if entity == "c" and rng.random() < 0.5:
                v = 7.25  # runs of equal values: stddev 0
            else:
                v = round(rng.uniform(-50, 150), 2)
            events.append((entity, BASE + t, v))
    # A lone event far from the others: n = 1, stddev null.
    events.append(("a", BASE + 5 * 3600, 12.5))
    rng.shuffle(events)  # arrival order
    return [(e, t, seq, v) for seq, (e, t, v) in enumerate(events, start=1)]


def main():
    rng = random.Random(SEED)
    events = make_events(rng)
    con = duckdb.connect()
    con.execute("CREATE TABLE ev (entity VARCHAR, ts TIMESTAMP, ts_s BIGINT, seq BIGINT, v DOUBLE)")
    con.executemany(
        "INSERT INTO ev VALUES (?, epoch_ms(?::BIGINT * 1000), ?, ?, ?)",  # TIMESTAMP, no time zone
        [(e, t, t, seq, v) for e, t, seq, v in events],
    )
    cols = []
    for i, w in enumerate(WINDOWS_S):
        frame = f"(PARTITION BY entity ORDER BY ts RANGE BETWEEN INTERVAL {w} SECOND PRECEDING AND CURRENT ROW)"
        cols.append(
            f"count(*) OVER {frame} AS c{i}, sum(v) OVER {frame} AS s{i}, avg(v) OVER {frame} AS a{i}, "
            f"min(v) OVER {frame} AS mn{i}, max(v) OVER {frame} AS mx{i}, stddev_samp(v) OVER {frame} AS sd{i}"
        )
    q = f"SELECT entity, ts_s, seq, v, {', '.join(cols)} FROM ev ORDER BY entity, ts_s, seq"
    rows = con.execute(q).fetchall()
    out = []
    for r in rows:
        entity, ts, seq, v = r[:4]
        per = []
        for i in range(len(WINDOWS_S)):
            c, s, a, mn, mx, sd = r[4 + 6 * i: 10 + 6 * i]
            z = None if sd is None or sd == 0 else (v - a) / sd
            per.append([c, s, a, mn, mx, sd, z])
        out.append([entity, ts, seq, v, per])
    # Cross-check the z-score expression in SQL itself on one window.
    zsql = con.execute(
        "SELECT seq, (v - avg(v) OVER w) / NULLIF(stddev_samp(v) OVER w, 0) FROM ev "
        "WINDOW w AS (PARTITION BY entity ORDER BY ts RANGE BETWEEN INTERVAL 300 SECOND PRECEDING AND CURRENT ROW)"
    ).fetchall()
    zby = dict(zsql)
    for row in out:
        assert zby[row[2]] == row[4][1][6], (row, zby[row[2]])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"seed": SEED, "duckdb": duckdb.__version__, "windows_s": WINDOWS_S, "events": out}, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(out)} events)")


if __name__ == "__main__":
    main()
