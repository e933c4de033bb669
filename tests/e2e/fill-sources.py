#!/usr/bin/env python3
"""Adds COUNT sources to a twin named NAME (created if missing) in the Doppel database at DB.

A fixture for the window's scale (tests/e2e/views.test.mjs, bench/ui-scale.mjs): the rows are
real rows of the real database file, written while no Doppel has it open, in the states a large
folder leaves behind (mostly ready, some queued, failed and processing); they have no passages,
since what is measured is the sources list itself. Prints the twin's id.
"""
import sqlite3
import sys
import time

db, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
conn = sqlite3.connect(db)
now = int(time.time() * 1000)
row = conn.execute("SELECT id FROM twins WHERE name = ?", (name,)).fetchone()
twin = row[0] if row else conn.execute(
    "INSERT INTO twins (name, created_at) VALUES (?, ?) RETURNING id", (name, now)).fetchone()[0]
states = ["ready"] * 17 + ["queued", "failed", "processing"]
rows = []
for i in range(count):
    state = states[i % len(states)]
    folder = f"/home/ana/archive/{i // 500:03d}"
    rows.append((
        twin, "file", f"{folder}/note-{i:05d}.md", f"Note {i:05d} of the archive",
        "text/markdown" if state == "ready" else None, 1000 + i,
        state, "file is malformed: bad bytes" if state == "failed" else None,
        3 if state == "ready" else 0, now - count + i, now - count + i,
    ))
conn.executemany(
    "INSERT INTO sources (twin_id, kind, origin, title, media_type, byte_size, state, error,"
    " chunk_count, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
conn.commit()
print(twin)
