import shutil

import pytest

from llamadna.data.corpus import reference_windows


def test_reference_windows_cover_every_record(small_bundle):
    ws = list(reference_windows(small_bundle.path, 1000))
    # three chromosomes of 60, 50 and 40 kb, no N, non-overlapping windows
    assert len(ws) == 60 + 50 + 40 and {len(w) for w in ws} == {1000}
    first = small_bundle.genome["chr1"][1][:1000].tobytes().decode()
    assert ws[0] == first
    half = list(reference_windows(small_bundle.path, 1000, stride=500))
    assert len(half) == 119 + 99 + 79 and half[1] == small_bundle.genome["chr1"][1][500:1500].tobytes().decode()


def test_reference_windows_skip_windows_with_too_many_n(small_bundle, tmp_path):
    d = tmp_path / "bundle"
    shutil.copytree(small_bundle.path, d)
    seq = "ACGT" * 25 + ("N" * 10 + "ACGT" * 22 + "AC") + ("N" * 11 + "A" * 89) + "acgt" * 25
    assert len(seq) == 400  # 4 windows of 100
    (d / "regions.fa").write_text(f">chr1\n{seq}\n>chr2\nACGT\n")
    ws = list(reference_windows(d, 100))
    # window 2 has 10 N (= 10 %: kept), window 3 has 11 (dropped); lower case is upper-cased;
    # chr2 is shorter than a window
    assert ws == [seq[:100], seq[100:200], seq[300:400].upper()]
    assert len(list(reference_windows(d, 100, max_n_fraction=0.0))) == 2
    with pytest.raises(ValueError, match="window"):
        next(reference_windows(d, 0))
