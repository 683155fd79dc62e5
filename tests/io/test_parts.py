"""The part store of sharded runs (io.parts): fingerprints, claims, done parts, in-order merge."""

from __future__ import annotations

import json
import math

import pytest

from llamadna.constants import DEFAULT_PART_ROWS
from llamadna.errors import ConfigError
from llamadna.io.parts import (
    PartStore,
    differences,
    dir_digest,
    files_digest,
    fingerprint,
    part_rows,
    parts_dir,
)


def _run(**change) -> dict:
    settings = {"batch_size": 16, "max_new_tokens": 8, "decoding": "grounded", "tile": 512}
    settings.update(change.pop("settings", {}))
    base = {"command": "annotate", "rows": 10, "part_rows": 4, "input": {"fasta": "aa"},
            "model": {"digest": "m1"}, "index": {"index_id": "i1", "windows": 5}, "settings": settings}
    return fingerprint(**{**base, **change})


def _meta(rank: int, rows: int, attempt: int = 7, **counts) -> dict:
    return {"rank": rank, "host": "h", "rows": rows, "seconds": 0.5, "attempt": attempt, "counts": counts}


def test_part_rows_are_whole_batches_and_the_parts_dir_sits_beside_the_output(tmp_path):
    assert [part_rows(n, 4, 10) for n in (1, 4, 5, 10)] == [4, 4, 8, 12]
    assert _run()["parts"] == 3  # 10 rows in parts of 4
    assert parts_dir(tmp_path / "p.tsv") == tmp_path / "p.tsv.parts"
    with pytest.raises(ConfigError, match="--part-size 0"):
        part_rows(0, 4, 10)
    # the default: MIN_PARTS parts of whole batches, at most DEFAULT_PART_ROWS rows, whatever
    # the number of processes (a run resumes with any number)
    assert part_rows(None, 32, 2_000) == 32  # 2,000 / 64 = 32: 63 parts
    assert part_rows(None, 32, 2_700) == 64  # 43 rows a part, rounded up to whole batches
    assert part_rows(None, 32, 10) == 32  # one batch at least
    assert part_rows(None, 32, 10_000_000) == DEFAULT_PART_ROWS


def test_a_fingerprint_that_differs_is_refused_naming_each_key(tmp_path):
    store = PartStore(tmp_path / "p.tsv.parts", 3)
    assert store.prepare(_run(), resume=False) == 0
    assert json.loads((store.dir / "run.json").read_text()) == _run()
    other = _run(model={"digest": "m2"}, settings={"batch_size": 32})
    with pytest.raises(ConfigError) as err:
        PartStore(store.dir, 3).prepare(other, resume=True)
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(f"--resume: {store.dir} was written by another run (")
    assert "model differs" in msg and "settings.batch_size 16 in the parts, 32 now" in msg
    assert "decoding" not in msg and "index" not in msg  # only what differs
    assert differences(_run(), _run(index={"index_id": "i2", "windows": 5})) == ["index differs"]
    assert differences(_run(), _run(index=None, rows=12)) == ["rows 10 in the parts, 12 now", "index differs"]
    assert PartStore(store.dir, 3).prepare(_run(), resume=True) == 0  # the same run: resumed


def test_a_parts_dir_without_resume_is_refused(tmp_path):
    store = PartStore(tmp_path / "p.tsv.parts", 3)
    store.prepare(_run(), resume=False)
    with pytest.raises(ConfigError, match=r"p\.tsv\.parts holds the parts of an interrupted run: add "
                       r"--resume to finish it, or delete it"):
        PartStore(store.dir, 3).prepare(_run(), resume=False)
    (store.dir / "run.json").unlink()
    with pytest.raises(ConfigError, match="holds no readable run.json"):
        PartStore(store.dir, 3).prepare(_run(), resume=True)


def test_claims_of_another_attempt_are_ignored(tmp_path):
    store = PartStore(tmp_path / "p.parts", 2)
    store.prepare(_run(rows=8), resume=False)
    assert store.claim(0, attempt=1) and not store.claim(0, attempt=1)  # one rank wins
    assert store.claim(0, attempt=2)  # a killed attempt's claim does not block the next
    assert store.claim(1, attempt=2) and not store.claim(1, attempt=2)
    assert store.done() == set() and not store.is_done(0)


def test_parts_merge_in_input_order_whoever_wrote_them(tmp_path):
    store = PartStore(tmp_path / "p.parts", 3)
    reused = store.prepare(_run(), resume=False)
    floats = [0.1 + 0.2, 1e-300, -0.013609851710498333, math.inf, 2.0, 7]
    rows = [{"id": f"r{i}", "confidence": floats[i % len(floats)], "gene": None} for i in range(10)]
    assert store.write(2, iter(rows[8:]), lambda n: _meta(1, n, splash_scored=1)) == 2  # the last first
    assert store.done() == {2} and store.rows_done() == 2
    store.write(0, rows[:4], lambda n: _meta(0, n, splash_scored=3))
    store.write(1, rows[4:8], lambda n: _meta(1, n, attempt=3))  # from an earlier attempt: reused
    store.wait(poll=0.01)
    back = list(store.predictions())
    assert back == rows  # order, and every value's type and float bits back (JSON round-trip)
    assert [type(r["confidence"]) for r in back] == [type(r["confidence"]) for r in rows]
    s = store.summary(attempt=7, reused=reused)
    assert s["per_rank"] == {0: {"parts": 1, "rows": 4, "seconds": 0.5}, 1: {"parts": 1, "rows": 2, "seconds": 0.5}}
    assert s["counts"] == {"splash_scored": 4} and (s["parts"], s["parts_reused"], s["parts_computed"]) == (3, 0, 3)
    # temporaries, claims and metadata are no parts
    (store.dir / ".part-000003.jsonl.1@h.x.tmp").write_text("")
    assert store.done() == {0, 1, 2}
    store.remove()
    assert not store.dir.exists()


def test_digests_see_every_byte_and_skip_checkpoints(tmp_path):
    d = tmp_path / "model"
    (d / "checkpoints" / "step-1").mkdir(parents=True)
    (d / "config.json").write_text("{}")
    (d / "w.bin").write_bytes(b"abc")
    first = dir_digest(d)
    (d / "checkpoints" / "step-1" / "w.bin").write_bytes(b"x")
    assert dir_digest(d) == first  # training checkpoints are not the model
    (d / "w.bin").write_bytes(b"abd")
    assert dir_digest(d) != first
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("AC")
    b.write_text("GT")
    assert files_digest([a, b]) != files_digest([b, a]) != files_digest([a])
