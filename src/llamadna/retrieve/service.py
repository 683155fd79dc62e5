"""One reference index per machine: a search service that serves one `Retriever` to the other
ranks of its machine.

Why a service. A reference index is windows + FAISS vectors + minimap2 indexes. FAISS
(`IO_FLAG_MMAP`) and the windows (as Arrow IPC) could be memory-mapped and shared through the
page cache, but the minimap2 indexes cannot: mappy loads each .mmi into the process's own heap,
and at genome scale they are several GB per pass (two or three passes), so N ranks of a machine
would hold N copies. A service shares all of the index at once, and the retriever's own encoder
copy with it. Local rank 0 of each machine loads the index, starts a `SearchService` and
advertises it in a file; the other local ranks `connect` to it and use the `RemoteRetriever` in
place of a `Retriever` (same call, same results). Measured (proportional set size,
/proc/self/smaps_rollup, one thread): on the demo index (minimap2 23 + 28 MB, FAISS flat 19 MB)
a process holds 118 MiB more once the index is loaded and 39 MiB more with the Retriever built
on it (its encoder and lookup tables): 167 MiB in all after a search, over 468 MiB of imports;
a client process holds nothing more once connected, so each client rank saves those 167 MiB,
and on a genome the gigabytes of the minimap2 indexes.

What it costs. The service's host rank does its neighbours' searches besides its own work (in
threads, one per client; searches run one at a time, since each already uses every core for
minimap2; their Python parts share the host's interpreter lock): when retrieval is a large share
of a batch, the host's own annotation slows down and the other ranks wait on it. The queries
and candidates cross a local socket as JSON (small beside a search).

Protocol. An abstract AF_UNIX socket (Linux; no file to clean up), opened through
`multiprocessing.connection` with an HMAC authkey: any process of the machine can reach an
abstract socket, so only a client that read the advertised file (mode 0600) gets in. Every
message is one JSON object (`send_bytes`/`recv_bytes`; never pickle, which would run code from
the peer): the client sends {"op": "search", "sequences": [...]} and gets {"ok": true,
"result": [[candidate, ...], ...]} or {"ok": false, "error": "<one line>"} (the exception the
search raised, raised again in the client as a `SearchServiceError`); {"op": "bye"} ends a
client. A candidate (`retrieve.retriever.CANDIDATE_FIELDS`) holds str, int, float and None
only: JSON round-trips them exactly (a float's repr is its shortest exact form), so a remote
search returns candidates equal to the local retriever's for the same batch (==, same types,
same float bits; a batch's queries are embedded together, so the last bits of a cosine depend
on the batch, remote or not). A value of any other type is refused by the service rather than
changed on the way.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from multiprocessing.connection import Client, Connection, Listener
from multiprocessing.context import AuthenticationError
from pathlib import Path

from llamadna.io.atomic import owner_prefix
from llamadna.progress import Progress, no_progress

log = logging.getLogger(__name__)

ADVERT_FORMAT = 1  # the advertised file's "format"
POLL_SECONDS = 0.05  # between looks for the advertised file / tries to connect
_JSON_TYPES = (str, int, float, bool, type(None))


class SearchServiceError(RuntimeError):
    """A search the service could not do (the exception it raised there, as one line), or a
    service that cannot be reached."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _check_json(value, where: str = "result") -> None:
    """TypeError unless `value` is made of what JSON gives back unchanged: str, int, float,
    bool, None, lists and str-keyed dicts (a tuple would come back a list, a numpy scalar not
    at all)."""
    if type(value) in _JSON_TYPES:
        return
    if type(value) is list:
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
    elif type(value) is dict:
        for k, v in value.items():
            if type(k) is not str:
                raise TypeError(f"{where} has a key of type {type(k).__name__}: not JSON")
            _check_json(v, f"{where}[{k!r}]")
    else:
        raise TypeError(f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which JSON "
                        "would not give back unchanged: the retriever must return plain Python values")


def _send(conn: Connection, message: dict) -> None:
    conn.send_bytes(json.dumps(message).encode())


def _receive(conn: Connection) -> dict:
    message = json.loads(conn.recv_bytes().decode())
    if not isinstance(message, dict):
        raise ValueError(f"expected a JSON object, got {type(message).__name__}")
    return message


def _wake(conn: Connection) -> None:
    """Shut a connection's socket down, so that a thread blocked reading it gets EOF (closing
    it would not wake that thread)."""
    with suppress(OSError):
        sock = socket.socket(fileno=conn.fileno())
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.detach()


class SearchService:
    """Serves one Retriever (callable: list[str] -> list[list[dict]]) to the other ranks of its
    machine over an abstract AF_UNIX socket (multiprocessing.connection, HMAC authkey),
    JSON messages only (send_bytes/recv_bytes; never pickle). One thread per client.

    Parameters
    ----------
    retriever : the `Retriever` (or any callable of the same signature) to serve.
    clients : how many clients will connect and say bye (the other local ranks); `wait` returns
        once each has said bye or hung up.
    """

    def __init__(self, retriever: Callable[..., list[list[dict]]], clients: int) -> None:
        if clients < 0:
            raise ValueError(f"clients must be >= 0, got {clients}")
        self.retriever, self.clients = retriever, clients
        self.authkey = os.urandom(32)
        self.address = f"\0llamadna-search-{os.getpid()}-{os.urandom(8).hex()}"  # abstract: no file
        self._listener: Listener | None = None
        self._search = threading.Lock()  # one search at a time (each uses every core already)
        self._state = threading.Condition()
        self._finished = 0  # clients that said bye or hung up
        self._connections: list[Connection] = []
        self._closed = False

    def start(self) -> None:
        """Listen, and accept and serve clients in background daemon threads."""
        if self._listener is not None:
            raise RuntimeError("the search service is already started")
        self._listener = Listener(self.address, family="AF_UNIX", authkey=self.authkey)
        threading.Thread(target=self._accept, name="search-accept", daemon=True).start()

    def advertise(self, path: Path) -> None:
        """Write {"format", "address", "authkey" (hex), "host", "pid"} to `path` atomically, mode
        0600 from its first byte (the key lets a process in)."""
        if self._listener is None:
            raise RuntimeError("start the search service before advertising it")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": ADVERT_FORMAT, "address": self.address, "authkey": self.authkey.hex(),
                           "host": socket.gethostname(), "pid": os.getpid()})
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=owner_prefix(path), suffix=".tmp")  # 0600
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(text + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def wait(self) -> None:
        """Until `clients` clients have said bye or hung up (or the service is closed)."""
        if self._listener is None and self.clients:
            raise RuntimeError("start the search service before waiting for its clients")
        with self._state:
            self._state.wait_for(lambda: self._finished >= self.clients or self._closed)

    def close(self) -> None:
        """Stop listening and drop every client (their next call fails); idempotent."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            for conn in self._connections:  # open: a client's thread closes it under this lock
                _wake(conn)
            self._state.notify_all()
        if self._listener is not None:
            with suppress(OSError):  # wake the accepting thread: it sees `_closed` and ends
                with socket.socket(socket.AF_UNIX) as sock:
                    sock.connect(self.address)
            with suppress(OSError):
                self._listener.close()

    def __enter__(self) -> SearchService:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ threads
    def _accept(self) -> None:
        accepted = 0
        while accepted < self.clients:
            try:
                conn = self._listener.accept()  # the HMAC handshake too
            except (AuthenticationError, EOFError, ConnectionError) as exc:
                if self._closed:
                    return
                log.warning("search service: a connection was refused (%s)", _one_line(exc))
                continue
            except OSError as exc:  # the listener was closed, or cannot accept any more
                if not self._closed:
                    log.error("search service: stopped accepting clients (%s)", _one_line(exc))
                return
            with self._state:
                if self._closed:
                    conn.close()
                    return
                self._connections.append(conn)
            accepted += 1
            threading.Thread(target=self._serve, args=(conn,), name=f"search-client-{accepted}",
                             daemon=True).start()
        with suppress(OSError):
            self._listener.close()  # every client is in: no one else may connect

    def _serve(self, conn: Connection) -> None:
        try:
            while True:
                try:
                    message = _receive(conn)
                except (EOFError, OSError):
                    return  # the client hung up (or was killed)
                except ValueError as exc:  # not JSON: answer, keep serving
                    _send(conn, {"ok": False, "error": f"malformed request: {_one_line(exc)}"})
                    continue
                op = message.get("op")
                if op == "bye":
                    _send(conn, {"ok": True})
                    return
                if op != "search":
                    _send(conn, {"ok": False, "error": f"unknown request {op!r}"})
                    continue
                _send(conn, self._answer(message.get("sequences")))
        except OSError:
            return
        finally:
            with self._state:
                conn.close()
                self._connections.remove(conn)
                self._finished += 1
                self._state.notify_all()

    def _answer(self, sequences) -> dict:
        if type(sequences) is not list or not all(type(s) is str for s in sequences):
            return {"ok": False, "error": "a search takes a list of sequences (strings)"}
        try:
            with self._search:
                result = self.retriever(sequences)
            _check_json(result)
        except Exception as exc:  # sent to the client, which raises it; logged here in full
            log.exception("search service: a search failed")
            return {"ok": False, "error": _one_line(exc)}
        return {"ok": True, "result": result}


class RemoteRetriever:
    """A `SearchService`'s retriever, called like the `Retriever` it serves:
    `(sequences, progress=no_progress) -> list[list[dict]]`, equal to the local retriever's
    result. `close()` says bye. `progress` is accepted and left unused: the search runs in the
    service's process, and its steps do not cross the socket."""

    def __init__(self, conn: Connection, path: Path, advert: dict) -> None:
        self.conn, self.path, self.advert = conn, Path(path), advert
        self._lock = threading.Lock()  # one request and its answer at a time

    @property
    def where(self) -> str:
        a = self.advert
        return f"the search service in {self.path} (pid {a.get('pid')} on {a.get('host')})"

    def __call__(self, sequences: Sequence[str], progress: Progress = no_progress) -> list[list[dict]]:
        with self._lock:
            if self.conn is None:
                raise SearchServiceError(f"{self.where}: this client is closed")
            try:
                _send(self.conn, {"op": "search", "sequences": list(sequences)})
                answer = _receive(self.conn)
            except (EOFError, OSError) as exc:
                raise SearchServiceError(f"{self.where} hung up ({_one_line(exc)}): did its rank "
                                         "end?") from None
        if not answer.get("ok"):
            raise SearchServiceError(f"{self.where}: {answer.get('error')}")
        return answer["result"]

    def close(self) -> None:
        """Say bye (the service counts this client as done) and close; idempotent."""
        with self._lock:
            if self.conn is None:
                return
            conn, self.conn = self.conn, None
        try:
            _send(conn, {"op": "bye"})
            _receive(conn)
        except (EOFError, OSError, ValueError):
            pass  # the service is gone already: nothing to say bye to
        finally:
            conn.close()

    def __enter__(self) -> RemoteRetriever:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_advert(path: Path) -> dict | None:
    """The advertised file's content; None while it does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        advert = json.loads(text)
        ok = isinstance(advert, dict) and isinstance(advert.get("address"), str)
        key = bytes.fromhex(advert["authkey"]) if ok else None
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok or not key:
        raise SearchServiceError(f"{path}: not a search service's advertisement (expected JSON with "
                                 "address and authkey)")
    return advert


def _alive(pid) -> bool:
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def connect(path: Path, timeout: float | None = None) -> RemoteRetriever:
    """A `RemoteRetriever` on the service advertised in `path`: waits for the file (its rank may
    still be loading the index), then connects, trying again while the service does not answer
    yet. `timeout`: seconds in all (None: no limit); past it, a SearchServiceError naming the
    file. A service whose process is gone, or that refuses the key, is an error at once."""
    path = Path(path)
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        advert = _read_advert(path)
        if advert is not None:
            try:
                conn = Client(advert["address"], family="AF_UNIX", authkey=bytes.fromhex(advert["authkey"]))
                return RemoteRetriever(conn, path, advert)
            except AuthenticationError:
                raise SearchServiceError(f"{path}: the search service refused this file's key (an older "
                                         "advertisement, or not the service's?)") from None
            except (ConnectionRefusedError, FileNotFoundError, EOFError, ConnectionResetError):
                if not _alive(advert.get("pid")) and advert.get("host") == socket.gethostname():
                    raise SearchServiceError(f"{path}: the search service's process "
                                             f"{advert.get('pid')} is gone") from None
        if end is not None and time.monotonic() >= end:
            what = "answered at" if advert is not None else "advertised in"
            raise SearchServiceError(f"no search service {what} {path} within {timeout:g} s (its rank "
                                     "loads the reference index first: did it fail?)")
        time.sleep(POLL_SECONDS)
