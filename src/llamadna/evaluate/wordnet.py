"""WordNet 3.0 for nltk, read offline from the Debian packages (never `nltk.download`).

Debian's `wordnet-base` and `wordnet-sense-index` install the WordNet 3.0 database in
/usr/share/wordnet. nltk's reader needs one more file, `lexnames` (the 45 lexicographer file
names and numbers), which Debian ships only as the man page lexnames(5WN); it is rebuilt here
from that page's table. nltk >= 3.9 opens corpus files only below an `nltk.data.path` entry and
refuses symlinks that leave the corpus root, so the database is *copied* (about 37 MB, once)
into a real `nltk_data/corpora/wordnet` directory in the cache directory (`$LLAMADNA_CACHE`, else
~/.cache/llamadna). The copy is built in a temporary directory and renamed into place, so a
crash or a concurrent build never leaves a half-written corpus. Nothing here touches the network.
"""

from __future__ import annotations

import errno
import functools
import gzip
import logging
import os
import re
import shutil
import warnings
from pathlib import Path

from llamadna.io.atomic import atomic_dir

logger = logging.getLogger(__name__)

ENV_CACHE = "LLAMADNA_CACHE"
WORDNET_SOURCE = Path("/usr/share/wordnet")
LEXNAMES_MANPAGE = Path("/usr/share/man/man5/lexnames.5WN.gz")
APT_HINT = "install the Debian packages wordnet-base and wordnet-sense-index (scripts/install-apt.sh)"
# Files nltk's WordNetCorpusReader opens (lexnames is made from the man page).
REQUIRED_FILES = (
    "data.adj", "data.adv", "data.noun", "data.verb",
    "index.adj", "index.adv", "index.noun", "index.verb", "index.sense",
    "adj.exc", "adv.exc", "noun.exc", "verb.exc",
)
N_LEXNAMES = 45  # WordNet 3.0 has lexicographer files 00..44 (lexnames(5WN))
# Syntactic category field of lexnames, from the name's prefix (lexnames(5WN), "Syntactic Category").
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
# A table row of the man page: two-digit number, tab, name (maybe trailing blanks), tab, contents.
_ROW = re.compile(r"^(\d\d)\t([a-z]+\.[A-Za-z]+)\s*\t")


def cache_dir() -> Path:
    """`$LLAMADNA_CACHE`, else ~/.cache/llamadna (absolute, symlinks resolved)."""
    env = os.environ.get(ENV_CACHE)
    p = Path(env).expanduser() if env else Path.home() / ".cache" / "llamadna"
    return p.resolve()


def lexnames_from_manpage(manpage: str | Path = LEXNAMES_MANPAGE) -> str:
    """The `lexnames` file (`NN<TAB>name<TAB>category` per line) parsed from lexnames(5WN).

    Raises FileNotFoundError when the man page is absent and ValueError when its table does not
    hold exactly the 45 files 00..44.
    """
    manpage = Path(manpage)
    if not manpage.exists():
        raise FileNotFoundError(
            f"{manpage}: WordNet man page lexnames(5WN) not found; nltk needs the lexnames table "
            f"it holds: {APT_HINT}")
    opener = gzip.open if manpage.suffix == ".gz" else open
    with opener(manpage, "rt", encoding="utf-8", errors="replace") as fh:
        rows = [m.groups() for m in map(_ROW.match, fh) if m is not None]
    numbers = [int(n) for n, _ in rows]
    if numbers != list(range(N_LEXNAMES)) or any(n.split(".")[0] not in _CATEGORY for _, n in rows):
        raise ValueError(f"{manpage}: expected the {N_LEXNAMES} lexicographer files 00..{N_LEXNAMES - 1} "
                         f"in its table, found {len(rows)}")
    return "".join(f"{num}\t{name}\t{_CATEGORY[name.split('.')[0]]}\n" for num, name in rows)


def ensure_wordnet(cache: str | Path | None = None, source: str | Path = WORDNET_SOURCE,
                   manpage: str | Path = LEXNAMES_MANPAGE) -> Path:
    """Build `CACHE/nltk_data/corpora/wordnet` once (atomically) and return `CACHE/nltk_data`.

    Parameters
    ----------
    cache : cache directory [default: `cache_dir()`].
    source : the WordNet database directory (Debian: /usr/share/wordnet).
    manpage : lexnames(5WN), the source of the `lexnames` file.
    """
    root = (Path(cache).resolve() if cache is not None else cache_dir()) / "nltk_data"
    corpora = root / "corpora"
    final = corpora / "wordnet"
    if (final / "lexnames").is_file():
        return root
    source = Path(source)
    missing = [f for f in REQUIRED_FILES if not (source / f).is_file()]
    if missing:
        raise FileNotFoundError(f"{source}: WordNet 3.0 database incomplete (missing "
                                f"{', '.join(missing)}): {APT_HINT}")
    lexnames = lexnames_from_manpage(manpage)
    # a killed build's copy is removed, a running one's kept; a concurrent build that finished
    # first is kept (others may be reading it)
    with atomic_dir(final, keep_existing=True) as tmp:
        for f in sorted(source.iterdir()):
            if f.is_file():  # real copies: nltk refuses symlinks out of the corpus root
                shutil.copyfile(f, tmp / f.name)
        (tmp / "lexnames").write_text(lexnames, encoding="utf-8")
    if not (final / "lexnames").is_file():  # what was there is not a WordNet copy of ours
        raise FileExistsError(errno.ENOTEMPTY, "not a WordNet copy (no lexnames); remove it", str(final))
    logger.info("WordNet 3.0 copied from %s to %s", source, final)
    return root


def load_wordnet(cache: str | Path | None = None):
    """nltk's `WordNetCorpusReader` over the offline copy (built on first use); cached per directory.

    The copy's `nltk_data` is put first on `nltk.data.path`, so `nltk.corpus.wordnet` finds it too.
    """
    root = ensure_wordnet(cache)
    return _reader(str(root))


@functools.lru_cache(maxsize=4)
def _reader(root: str):
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    if root not in nltk.data.path:
        nltk.data.path.insert(0, root)
    pointer = nltk.data.find("corpora/wordnet", paths=[root])
    with warnings.catch_warnings():
        # No Open Multilingual Wordnet is installed: only English is used (METEOR's synonyms).
        warnings.filterwarnings("ignore", message="The multilingual functions are not available",
                                category=UserWarning)
        return WordNetCorpusReader(pointer, None)
