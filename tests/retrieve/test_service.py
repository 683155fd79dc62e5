"""The search service: one retriever served to other processes over a local socket, with the
local retriever's exact results, its errors, its key, and its end (`wait`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from llamadna.data.mutate import mutate
from llamadna.errors import InputError
from llamadna.retrieve.retriever import Retriever
from llamadna.retrieve.service import SearchService, SearchServiceError, connect

REPO = Path(__file__).resolve().parents[2]


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """`code` in a fresh Python process of this environment (stdout piped)."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True, env=env,
                            **kwargs)


def _waiting(service: SearchService) -> threading.Thread:
    waiter = threading.Thread(target=service.wait, daemon=True)
    waiter.start()
    return waiter


def _echo(sequences: list[str]) -> list[list[dict]]:
    """A retriever without an index: one candidate per query; "boom" raises as a retriever
    does on bad input, "numpy" returns a value JSON would not give back."""
    if "boom" in sequences:
        raise InputError("queries.fa", "line one\nline two", line=3)
    if "numpy" in sequences:
        return [[{"score": np.float32(0.5)}]]
    return [[{"gene": s, "score": 1.0 + len(s) / 3, "position": len(s), "via": None}] for s in sequences]


@pytest.fixture
def service(tmp_path):
    """An `_echo` service for 1 client, advertised in tmp_path/search.json; closed after."""
    svc = SearchService(_echo, clients=1)
    svc.start()
    svc.advertise(tmp_path / "search.json")
    yield svc, tmp_path / "search.json"
    svc.close()


CHILD = """
import sys
from pathlib import Path
from llamadna.retrieve.service import connect
queries = Path(sys.argv[2]).read_text().split()
with connect(Path(sys.argv[1]), timeout=60) as remote:
    print(repr(remote(queries)))
"""


def test_remote_searches_equal_the_local_retriever(workspace, tmp_path):
    """Clients in threads and in another process get the local retriever's candidates: equal,
    of the same types, the same float bits (repr shows both)."""
    root, _, df, index = workspace
    rng = np.random.default_rng(3)
    genic = df.filter(pl.col("gene_name").is_not_null())["Sequence"]
    q = [*genic.head(12).to_list(), *(mutate(s, 0.25, rng) for s in genic.tail(12)),
         *index.windows.filter(pl.col("gene").is_null())["Sequence"].head(6).to_list(), "N" * 80, "ACGT"]
    retriever = Retriever(index, str(root / "encoder"), k=6)
    local = retriever(q)
    # the same batch only: a batch's queries are embedded together (padding), so their cosines'
    # last bits depend on the batch
    parts = [retriever(q[i::3]) for i in range(3)]
    found = [c for h in local for c in h]
    # every kind of candidate and value: aligned and embedded, genes and intergenic, None fields
    assert {c["via"] for c in found} >= {"embed", "both"}
    assert {c["kind"] for c in found} == {"gene", "intergenic"} and local[-1] == local[-2] == []
    assert {type(c["cosine"]) for c in found} == {float, type(None)}

    svc = SearchService(retriever, clients=4)
    svc.start()
    svc.advertise(tmp_path / "search.json")
    assert oct((tmp_path / "search.json").stat().st_mode & 0o777) == "0o600"
    assert json.loads((tmp_path / "search.json").read_text())["address"].startswith("\0")  # abstract
    (tmp_path / "q.txt").write_text("\n".join(q[:-2]))
    child = _python(CHILD, str(tmp_path / "search.json"), str(tmp_path / "q.txt"))
    results: dict[int, list] = {}

    def client(i: int) -> None:
        with connect(tmp_path / "search.json", timeout=60) as remote:
            results[i] = [remote(q), remote(q[i::3])]

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    out, _ = child.communicate(timeout=120)
    for t in threads:
        t.join(120)
    svc.wait()
    svc.close()
    assert child.returncode == 0 and out.strip() == repr(local[:-2])
    assert sorted(results) == [0, 1, 2]
    for i, (whole, part) in results.items():
        assert whole == local and repr(whole) == repr(local)
        assert repr(part) == repr(parts[i])


def test_a_failed_search_is_an_error_in_the_client(service):
    svc, path = service
    with connect(path, timeout=10) as remote:
        assert remote(["AC", "ACGT"]) == _echo(["AC", "ACGT"])
        with pytest.raises(SearchServiceError) as err:
            remote(["ACGT", "boom"])
        assert "\n" not in str(err.value) and str(path) in str(err.value)
        assert str(err.value).endswith("InputError: queries.fa:3: line one line two")
        # a value JSON would change is refused there, not changed on the way
        with pytest.raises(SearchServiceError, match=r"numpy.float32.*plain Python values"):
            remote(["numpy"])
        assert remote(["A"]) == _echo(["A"])  # the service goes on serving
    svc.wait()  # the client said bye


def test_a_wrong_key_is_refused(service, tmp_path):
    svc, path = service
    advert = json.loads(path.read_text())
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**advert, "authkey": os.urandom(32).hex()}))
    with pytest.raises(SearchServiceError, match=r"forged.json: the search service refused this file's key"):
        connect(forged, timeout=10)
    waiter = _waiting(svc)
    waiter.join(0.3)
    assert waiter.is_alive()  # a refused client does not count
    with connect(path, timeout=10) as remote:  # the real key still gets in
        assert remote(["ACG"]) == _echo(["ACG"])
    waiter.join(10)
    assert not waiter.is_alive()


def test_connect_gives_up_with_the_file_named(tmp_path):
    with pytest.raises(SearchServiceError, match=r"no search service advertised in .*nowhere.json within 0.2 s"):
        connect(tmp_path / "nowhere.json", timeout=0.2)
    silent = tmp_path / "silent.json"  # a live process (this one) that does not listen
    silent.write_text(json.dumps({"address": "\0llamadna-test-none", "authkey": "00" * 32,
                                  "host": os.uname().nodename, "pid": os.getpid()}))
    with pytest.raises(SearchServiceError, match=r"no search service answered at .*silent.json within 0.2 s"):
        connect(silent, timeout=0.2)
    gone = _python("")
    gone.communicate()
    silent.write_text(json.dumps({**json.loads(silent.read_text()), "pid": gone.pid}))
    with pytest.raises(SearchServiceError, match=r"silent.json: the search service's process \d+ is gone"):
        connect(silent)  # no timeout: an ended service is known at once
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(SearchServiceError, match="junk.json: not a search service's advertisement"):
        connect(tmp_path / "junk.json", timeout=1)


def test_connect_waits_for_the_service(tmp_path):
    """A client started before the service (its rank still loads the index) gets in once it is up."""
    path = tmp_path / "search.json"
    (tmp_path / "q.txt").write_text("AC\nACGT")
    child = _python(CHILD, str(path), str(tmp_path / "q.txt"))
    time.sleep(0.5)
    svc = SearchService(_echo, clients=1)
    svc.start()
    svc.advertise(path)
    out, _ = child.communicate(timeout=60)
    svc.wait()
    svc.close()
    assert child.returncode == 0 and out.strip() == repr(_echo(["AC", "ACGT"]))


KEEP = """
import sys, time
from pathlib import Path
from llamadna.retrieve.service import connect
remote = connect(Path(sys.argv[1]), timeout=60)
print(remote(["ACGT"]), flush=True)
time.sleep(120)
"""


def test_wait_returns_after_bye_and_after_a_killed_client(tmp_path):
    svc = SearchService(_echo, clients=2)
    svc.start()
    svc.advertise(tmp_path / "search.json")
    waiter = _waiting(svc)
    child = _python(KEEP, str(tmp_path / "search.json"))
    assert child.stdout.readline().strip() == repr(_echo(["ACGT"]))
    remote = connect(tmp_path / "search.json", timeout=10)
    remote.close()
    remote.close()  # once is enough
    with pytest.raises(SearchServiceError, match="closed"):
        remote(["A"])
    waiter.join(0.3)
    assert waiter.is_alive()  # one client said bye, the other is connected
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    waiter.join(10)
    assert not waiter.is_alive()
    svc.close()


def test_a_closed_service_fails_its_clients_instead_of_hanging(service):
    svc, path = service
    remote = connect(path, timeout=10)
    assert remote(["AC"]) == _echo(["AC"])
    svc.close()
    with pytest.raises(SearchServiceError, match="hung up"):
        remote(["AC"])
    remote.close()
    svc.wait()  # closed: returns at once
