import json

import polars as pl
import pytest

from llamadna.errors import InputError
from llamadna.io.dataset import check_output_dir, read_summary, table_build_id, write_dataset


def test_table_and_summary_share_a_build_id(tmp_path):
    df = pl.DataFrame({"Sequence": ["ACGT"], "Dataset": ["ClinVar"]})
    pq, js = write_dataset(df, {"rows": 1}, tmp_path / "ds")
    summary = read_summary(tmp_path / "ds")
    assert summary["rows"] == 1 and summary["build_id"] == table_build_id(pq)
    assert pl.read_parquet(pq).equals(df)
    # a second write gets a new id; an old summary beside the new table is refused
    old = js.read_text()
    write_dataset(df, {"rows": 1}, tmp_path / "ds")
    js.write_text(old)
    with pytest.raises(InputError, match=r"summary\.json: belongs to another build than dataset\.parquet"):
        read_summary(tmp_path / "ds")
    js.write_text("{not json")
    with pytest.raises(InputError, match=r"summary\.json:1: not valid JSON"):
        read_summary(tmp_path / "ds")
    assert read_summary(tmp_path / "missing") == {}


def test_output_must_be_a_directory(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InputError, match="exists and is not a directory"):
        check_output_dir(f)
    with pytest.raises(InputError, match="exists and is not a directory"):
        write_dataset(pl.DataFrame({"a": [1]}), {}, f)
    assert f.read_text() == "x" and json.dumps(check_output_dir(tmp_path / "new").name) == '"new"'
