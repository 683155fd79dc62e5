import base64
import json
import re
from html.parser import HTMLParser

import pytest

from llamadna.data.template import SENTENCE_FIELDS as FIELDS
from llamadna.evaluate.report import MISSING, REPORTED_LABEL, diff_html, word_diff, write_report
from llamadna.evaluate.schema import missing_keys, read_metrics
from llamadna.evaluate.systems import SYSTEM_NAMES

SPLITS = ["split_random", "split_gene", "split_chrom"]
SYSTEMS = list(SYSTEM_NAMES)  # every system, the retrieval model's too
RATES = [0, 0.01, 0.05, 0.1, 0.2, 0.3]
REPORTED = {
    "poster (reported)": {"accuracy": 0.8719, "f1_macro": 0.6422, "bleu": 0.6118, "rougeL": 0.7591, "meteor": 0.8413},
    "poster baseline (reported)": {"accuracy": 0.8065, "f1_macro": 0.4464, "bleu": 0.5685, "rougeL": 0.7172, "meteor": 0.7833},
}
SENTENCE = ("This sequence is part of {chrom} chromosome part of {gene} gene. This gene is described as "
            "{desc} and a protein coding transcript type. It is of {pheno} phenotype. It is part of the "
            "{src} dataset.")


def _system_metrics(base: float, k: int) -> dict:
    """Complete compute_metrics-shaped output with distinct, plausible values."""
    v = round(base - 0.05 * k, 4)
    return {
        "accuracy": v, "f1_macro": round(v - 0.2, 4), "bleu": round(v - 0.1, 4), "rougeL": round(v - 0.05, 4),
        "meteor": round(v - 0.02, 4), "semantic_similarity": round(v + 0.03, 4),
        "accuracy_from_text": round(v - 0.01, 4), "f1_from_text": round(v - 0.21, 4),
        "field_accuracy": {f: round(max(0.0, v - 0.08 * i), 4) for i, f in enumerate(FIELDS)},
        "confusion": {"labels": ["ClinVar", "COSMIC", "dbSNP"], "matrix": [[40 - k, 3, 2], [5, 20, 1], [2, 1, 26 + k]]},
        "n": 100, "field_mean": round(v - 0.1, 4),
        "intervals": {k: [round(v - 0.3, 4), round(v, 4)] for k in (
            *(f"field_{f}" for f in FIELDS), "field_mean", "accuracy", "f1_macro", "bleu", "rougeL", "meteor")},
    }


def fake_metrics() -> dict:
    """A fake but complete instance of the evaluation command's metrics dict."""
    splits = {}
    for s, split in enumerate(SPLITS):
        systems = {name: _system_metrics(0.9 - 0.1 * s, k) for k, name in enumerate(SYSTEMS)}
        systems["seed_faithful"]["semantic_similarity"] = None  # not applicable
        systems["majority"]["bleu"] = None
        div = {}
        for name, top in (("model", 0.9 - 0.1 * s), ("reference_lookup", 1.0)):
            div[name] = {
                "field_accuracy": {f: [round(max(0.0, top - 0.04 * i - 2 * r * (i + 1) / 3), 4) for r in RATES]
                                   for i, f in enumerate(FIELDS)},
                "accuracy": [round(max(0.0, top - r), 4) for r in RATES],
                "field_mean": [round(max(0.0, top - r) / 2, 4) for r in RATES],
                "intervals": {"gene": [[0.1, 0.2] for _ in RATES]},
            }
        floor = _system_metrics(0.5, 0)
        floor["field_accuracy"] = dict.fromkeys(FIELDS, 0.0)
        splits[split] = {"rows": 100, "systems": systems, "divergence": {"rates": RATES, "systems": div, "rows": 60,
                                                                   "of_rows": 100, "splash_recomputed": True},
                         "template_floor": floor, "genes": 12, "units": [split],
                         "ceiling": {"ceiling": 0.98, "n_conflicting_groups": 2},
                         "leak_audit": {split: {"overlapping": 3, "duplicate_sequences": 1}},
                         "variant_tables": {split: {"blastn": "training split of " + split}}}
    return {
        "meta": {"dataset": "ds/dataset.parquet", "data_dir": "../shared/data", "model": "runs/tiny",
                 "model_config": {"preset": "tiny", "hidden": 32}, "train_config": {"lr": 1e-4, "epochs": 1},
                 "seed": 7, "splits": SPLITS, "created": "2025-01-01T00:00:00", "rows_per_split": dict.fromkeys(SPLITS, 100),
                 "eval_config": {"seed": 7}, "seconds": 1.5},
        "splits": splits,
        "reported": REPORTED,
        "systems": {"seed_faithful": "gene metadata in the prompt (a label flag)"},
        "benchmark": {"directory": "bench/mito", "queries": 4, "model_split": "split_gene", "systems": {
            name: {"all": {"gene": g, "transcript_type": 1.0, "chrom": 1.0, "n": 4},
                   "species": {"cow": {"gene": g, "transcript_type": 1.0, "chrom": 1.0, "n": 4}},
                   "identity": {"<75": {"gene": g, "transcript_type": 1.0, "chrom": 1.0, "n": 4}},
                   "all_intervals": {"gene": [g - 0.25, g], "transcript_type": [1.0, 1.0], "chrom": [1.0, 1.0]}}
            for name, g in (("model", 0.25), ("blastn", 0.75))}},
    }


def fake_examples() -> list[dict]:
    out = []
    for split in SPLITS:
        for i in range(12):
            ref = SENTENCE.format(chrom="chr17", gene="BRCA1", desc="BRCA1 DNA repair associated",
                                  pheno="Breast cancer", src="ClinVar")
            pred = SENTENCE.format(chrom="chr17", gene="BRCA2" if i % 2 else "BRCA1",
                                   desc="BRCA1 DNA repair associated", pheno="Breast cancer",
                                   src="dbSNP" if i % 3 else "ClinVar")
            out.append({"split": split, "system": "model", "id": f"{split}-{i}", "reference": ref, "prediction": pred})
    # HTML inside a sentence must be escaped, not rendered
    out[0]["prediction"] = out[0]["reference"].replace("Breast cancer", "Breast <b>bold</b> cancer")
    return out


class _Page(HTMLParser):
    """Collects tags, attributes and text; checks that non-void tags are balanced."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.attrs, self.text = [], [], [], [], []
        self._capture = None  # (tag, class) being captured for diff checks
        self.marked = {"only-truth": [], "only-pred": []}

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.append((tag, dict(attrs)))
        cls = dict(attrs).get("class")
        if cls in self.marked:
            self._capture = cls
            self.marked[cls].append("")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}>, open: {self.stack[-3:]}")
            return
        self.stack.pop()
        if tag in ("del", "ins"):
            self._capture = None

    def handle_data(self, data):
        self.text.append(data)
        if self._capture:
            self.marked[self._capture][-1] += data


def _tables(html: str, cls: str) -> list[str]:
    return re.findall(rf'<table class="{cls}">(.*?)</table>', html, re.S)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    metrics = fake_metrics()
    path = write_report(metrics, fake_examples(), out)
    page = _Page()
    text = path.read_text(encoding="utf-8")
    page.feed(text)
    page.close()
    return {"dir": out, "path": path, "html": text, "page": page, "metrics": metrics}


def test_writes_both_files(report):
    assert report["path"] == report["dir"] / "report.html"
    assert (report["dir"] / "metrics.json").is_file()
    assert not [p for p in report["dir"].iterdir() if p.name.endswith(".tmp")]


def test_html_is_balanced_and_has_a_title(report):
    page = report["page"]
    assert page.errors == []
    assert page.stack == []
    assert report["html"].startswith("<!DOCTYPE html>")
    assert "title" in page.tags and "h1" in page.tags


def test_self_contained_no_script_no_external_refs(report):
    page, html = report["page"], report["html"]
    assert "script" not in page.tags
    assert not re.search(r"https?://", html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    for tag, attrs in page.attrs:
        for key in ("href", "src"):
            if key in attrs:
                assert attrs[key].startswith(("#", "data:image/png;base64,")), (tag, attrs[key][:40])


def test_every_image_is_an_embedded_png(report):
    imgs = [a for t, a in report["page"].attrs if t == "img"]
    # per split: confusion, divergence, field bars; plus the split comparison
    assert len(imgs) == 3 * len(SPLITS) + 1
    for attrs in imgs:
        src = attrs["src"]
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True)[:8] == b"\x89PNG\r\n\x1a\n"
        assert attrs.get("alt")


def test_every_split_and_system_appears(report):
    text = " ".join(report["page"].text)
    ids = {a.get("id") for _, a in report["page"].attrs}
    for split in SPLITS:
        assert split in ids
        assert split in text
    for system in SYSTEMS:
        assert system in text
    # one metric-table row per system per split, in a fixed order, then the reported rows
    tables = _tables(report["html"], "metrics")
    assert len(tables) == len(SPLITS)
    for table in tables:
        names = re.findall(r"<tr(?: class=\"\w+\")?><td>([^<]+?)(?: <span|</td>)", table)
        assert names == SYSTEMS + list(REPORTED)
    assert len(_tables(report["html"], "fields")) == len(SPLITS)


def test_reported_rows_are_labelled_and_styled(report):
    html = report["html"]
    rows = re.findall(r'<tr class="reported">(.*?)</tr>', html)
    assert len(rows) == len(REPORTED) * len(SPLITS)
    for name in REPORTED:
        assert sum(name in r for r in rows) == len(SPLITS)
    for row in rows:
        assert REPORTED_LABEL in row
        assert "0.8719" in row or "0.8065" in row
        assert row.count(MISSING) == 2  # semantic similarity and n are not reported
    assert "tr.reported" in html  # a distinct style exists for them


def test_none_shown_as_dash(report):
    html = report["html"]
    assert MISSING == "\u2013"
    # majority's BLEU is None in every split: its row holds a dash where BLEU is
    for table in _tables(html, "metrics"):
        row = re.search(r"<tr><td>majority</td>(.*?)</tr>", table).group(1)
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[2] == MISSING  # accuracy, f1_macro, bleu
        assert MISSING not in cells[:2]
        row = re.search(r"<tr><td>seed_faithful</td>(.*?)</tr>", table).group(1)
        assert re.findall(r"<td[^>]*>(.*?)</td>", row)[5] == MISSING  # semantic_similarity
    assert "None" not in " ".join(report["page"].text)
    assert "nan" not in " ".join(report["page"].text).lower().split()


def test_summary_compares_model_with_best_baseline(report):
    html = report["html"]
    summary = re.search(r'<ul class="summary">(.*?)</ul>', html, re.S).group(1)
    for split in SPLITS:
        assert split in summary
    # model is best on every metric in the fake data; best baseline accuracy is majority (k=1)
    assert "accuracy 0.900 vs 0.850 (majority, +0.050)" in summary
    assert "below" not in summary


def test_summary_says_when_model_is_below_a_baseline(tmp_path):
    metrics = fake_metrics()
    del metrics["splits"]["split_random"], metrics["splits"]["split_chrom"]
    metrics["splits"]["split_gene"]["systems"]["reference_lookup"]["bleu"] = 0.99
    metrics["splits"]["split_gene"]["systems"].pop("seed_faithful")
    metrics["systems"] = {}
    metrics.pop("benchmark")
    metrics["splits"]["split_gene"]["divergence"]["systems"] = {}  # no system re-run (--systems)
    html = write_report(metrics, [], tmp_path).read_text()
    assert "BLEU 0.700 vs 0.990 (reference_lookup, -0.290)" in html
    assert "Model below the best baseline on BLEU" in html
    assert "seed_faithful" not in html
    assert "No divergence results" in html
    assert html.count("<img") == 2  # confusion + field bars; no split comparison with one split


def test_word_diff_marks_exactly_the_differing_words():
    ref = "It is part of BRCA1 gene and the ClinVar dataset."
    pred = "It is part of BRCA2 gene and ClinVar dataset. Extra"
    ref_words, pred_words = word_diff(ref, pred)
    assert [w for w, d in ref_words if d] == ["BRCA1", "the"]
    assert [w for w, d in pred_words if d] == ["BRCA2", "Extra"]
    assert " ".join(w for w, _ in ref_words) == ref
    assert " ".join(w for w, _ in pred_words) == pred
    same, _ = word_diff(ref, ref)
    assert not any(d for _, d in same)
    truth_html, pred_html = diff_html(ref, pred)
    assert truth_html == ('It is part of <del class="only-truth">BRCA1</del> gene and '
                          '<del class="only-truth">the</del> ClinVar dataset.')
    assert pred_html == ('It is part of <ins class="only-pred">BRCA2</ins> gene and ClinVar dataset. '
                         '<ins class="only-pred">Extra</ins>')
    # a run of differing words is one mark; punctuation stays with its word
    truth_html, pred_html = diff_html("of BRCA1 gene. This", "of TP53 tumor gene This")
    assert truth_html == 'of <del class="only-truth">BRCA1 gene.</del> This'
    assert pred_html == 'of <ins class="only-pred">TP53 tumor gene</ins> This'


def test_word_diff_of_empty_prediction():
    ref_words, pred_words = word_diff("a b", "")
    assert ref_words == [("a", True), ("b", True)] and pred_words == []


def test_examples_show_ten_per_split_with_diff(report):
    html = report["html"]
    for split in SPLITS:
        assert f"{split}-9" in html and f"{split}-10" not in html
    marked = report["page"].marked
    # odd examples swap the gene, examples not divisible by 3 the dataset
    assert "BRCA1" in marked["only-truth"] and "BRCA2" in marked["only-pred"]
    assert "dbSNP" in marked["only-pred"]


def test_html_in_sentences_is_escaped(report):
    html = report["html"]
    assert "Breast &lt;b&gt;bold&lt;/b&gt; cancer" not in html  # diffed words are separately marked
    assert "&lt;b&gt;bold&lt;/b&gt;" in html
    assert "<b>bold</b>" not in html
    truth, pred = diff_html("a <b>x</b> & c", "a <b>x</b> & d")
    assert truth == 'a &lt;b&gt;x&lt;/b&gt; &amp; <del class="only-truth">c</del>'
    assert pred == 'a &lt;b&gt;x&lt;/b&gt; &amp; <ins class="only-pred">d</ins>'


def test_metrics_json_round_trips(report):
    assert json.loads((report["dir"] / "metrics.json").read_text()) == report["metrics"]


def test_metrics_json_is_standard_json_for_numpy_and_nan(tmp_path):
    np = pytest.importorskip("numpy")
    metrics = fake_metrics()
    metrics["splits"] = {"split_gene": metrics["splits"]["split_gene"]}
    metrics["reported"], metrics["splits"]["split_gene"]["rows"] = {}, np.int64(3)
    model = metrics["splits"]["split_gene"]["systems"]["model"]
    model.update(accuracy=np.float64(0.5), bleu=float("nan"),
                 confusion={"labels": ["a", "b"], "matrix": np.array([[3, 1], [0, 2]])})
    metrics["splits"]["split_gene"]["divergence"]["rates"] = []
    write_report(metrics, [], tmp_path)
    got = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert got["splits"]["split_gene"]["rows"] == 3
    model = got["splits"]["split_gene"]["systems"]["model"]
    assert (model["accuracy"], model["bleu"]) == (0.5, None)
    assert model["confusion"] == {"labels": ["a", "b"], "matrix": [[3, 1], [0, 2]]}
    html = (tmp_path / "report.html").read_text()
    assert "No divergence results" in html and REPORTED_LABEL not in html
    assert html.count("<img") == 2  # the confusion matrix, drawn from a numpy array; field bars


def test_no_splits_still_render(tmp_path):
    metrics = {**fake_metrics(), "splits": {}, "systems": {}}
    metrics.pop("benchmark")
    path = write_report(metrics, [], tmp_path)
    page = _Page()
    page.feed(path.read_text())
    assert page.errors == [] and page.stack == []
    assert "No splits were evaluated" in path.read_text()


def test_divergence_with_missing_points_still_plots(tmp_path):
    metrics = fake_metrics()
    for split in ("split_random", "split_chrom"):
        del metrics["splits"][split]
    div = metrics["splits"]["split_gene"]["divergence"]["systems"]
    div["model"]["field_accuracy"]["gene"][2] = None  # a rate that was not evaluated
    div["reference_lookup"]["accuracy"] = [0.5]  # wrong length: left out, not fatal
    del div["reference_lookup"]["field_accuracy"]["phenotype"]
    html = write_report(metrics, [], tmp_path).read_text()
    assert html.count("<img") == 3  # confusion, divergence, field bars


def test_headline_intervals_floor_audits_and_benchmark(report):
    html = report["html"]
    tables = _tables(html, "headline")
    assert len(tables) == len(SPLITS)
    for table in tables:
        names = re.findall(r"<tr(?: class=\"\w+\")?><td>([^<]+?)</td>", table)
        assert names == SYSTEMS + ["template floor"]
    assert "<small>[0.600, 0.900]</small>" in tables[0]  # model accuracy of split_random with its interval
    text = " ".join(report["page"].text)
    assert "cluster bootstrap over genes" in text and "n_conflicting_groups" in text
    assert "label flag" in text and "Real divergence: cross-species benchmark" in text
    bench = _tables(html, "benchmark")[0]
    assert "0.750 <small>[0.500, 0.750]</small>" in bench and "cow (n=4)" in bench


def test_divergence_table_gives_values_intervals_and_rows(report):
    html = report["html"]
    assert html.count("60 of 100 test rows (a seeded subsample)") == len(SPLITS)
    assert "SPLASH scores recomputed from the anchors tables" in html
    rates = fake_metrics()["splits"]["split_gene"]["divergence"]
    gene = rates["systems"]["reference_lookup"]["field_accuracy"]["gene"]
    row = re.search(r"<tr><td>reference_lookup</td><td>gene</td>(.*?)</tr>", html).group(1)
    assert row.count("[0.100, 0.200]") == len(RATES) and f"{gene[-1]:.3f}" in row
    mean = re.search(r"<tr><td>model</td><td>field mean</td>(.*?)</tr>", html).group(1)
    assert mean.count("<td") == len(RATES) and "[" not in mean  # no interval given: none shown


def test_fake_metrics_follow_the_schema_and_round_trip(tmp_path):
    metrics = fake_metrics()
    assert missing_keys(metrics) == []
    write_report(metrics, [], tmp_path)
    assert read_metrics(tmp_path / "metrics.json") == metrics
    del metrics["splits"]["split_gene"]["template_floor"]["intervals"], metrics["meta"]["seed"]
    assert missing_keys(metrics) == ["meta.seed", "splits.split_gene.template_floor.intervals"]
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match="no meta.seed, splits.split_gene.template_floor.intervals"):
        read_metrics(tmp_path / "metrics.json")


def test_systems_are_listed_in_the_order_of_the_table():
    from llamadna.evaluate.report import _ordered_systems

    names = [*reversed(SYSTEM_NAMES), "zz_old", "aa_old"]  # systems of an old report follow, sorted
    assert _ordered_systems(names) == [*SYSTEM_NAMES, "aa_old", "zz_old"]
    assert _ordered_systems(["no_dna", "model_novel", "majority"]) == ["majority", "model_novel", "no_dna"]
