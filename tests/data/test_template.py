import polars as pl
import pytest

from llamadna.constants import ANNOTATION_TEMPLATE, NONE_SENTENCE, OUTCOMES
from llamadna.data.template import (
    SENTENCE_FIELDS,
    annotation_expr,
    annotation_sentence,
    deciding_end,
    distance_text,
    flank_text,
    intergenic_sentence,
    outcome_of,
    parse_annotation,
    parse_outcome,
    repeat_sentence,
    similar_sentence,
)

POSTER = (
    "This sequence is part of chr1 chromosome part of TUFT1 gene. This gene is described as "
    "tuftelin 1 and a protein coding transcript type. It is of skin fragility and woolly hair "
    "syndrome phenotype. It is part of the ClinVar dataset."
)


def test_sentence_is_the_posters_verbatim():
    fields = dict(chrom="chr1", gene_name="TUFT1", gene_description="tuftelin 1",
                  transcript_type="protein coding",
                  phenotype="skin fragility and woolly hair syndrome", Dataset="ClinVar")
    assert annotation_sentence(**fields) == POSTER
    assert pl.DataFrame([fields]).select(annotation_expr())["Annotation"][0] == POSTER


# ---------------------------------------------------------------------------- parsing
ROW = dict(chrom="chr17", gene_name="BRCA1", gene_description="BRCA1 DNA repair associated",
           transcript_type="protein coding",
           phenotype="Breast-ovarian cancer, familial 1 and Hereditary cancer", Dataset="ClinVar")
EXPECTED = dict(chrom="chr17", gene="BRCA1", description="BRCA1 DNA repair associated",
                transcript_type="protein coding",
                phenotype="Breast-ovarian cancer, familial 1 and Hereditary cancer", source="ClinVar")


def test_exact_template_round_trips():
    assert parse_annotation(ANNOTATION_TEMPLATE.format(**ROW)) == EXPECTED
    assert parse_annotation(annotation_sentence(**ROW)) == EXPECTED


def test_every_placeholder_of_the_template_is_parsed():
    # the parser is built from the template: a new placeholder would have to be mapped
    values = {p: f"<{p}>" for p in SENTENCE_FIELDS.values()}
    got = parse_annotation(ANNOTATION_TEMPLATE.format(**values))
    assert got == {k: f"<{p}>" for k, p in SENTENCE_FIELDS.items()}


@pytest.mark.parametrize("description, phenotype", [
    ("solute carrier family 2 member 1. Also a transporter", "not specified"),  # period inside
    ("protein kinase and a phosphatase", "A and B"),  # " and a " inside the description
    ("gene of the gene family", "Cancer phenotype of the skin"),  # template words inside values
])
def test_values_that_contain_template_words(description, phenotype):
    row = dict(ROW, gene_description=description, phenotype=phenotype)
    got = parse_annotation(annotation_sentence(**row))
    assert got["description"] == description and got["phenotype"] == phenotype
    assert got["transcript_type"] == "protein coding" and got["source"] == "ClinVar"


def test_whitespace_is_collapsed_and_not_specified_kept():
    text = annotation_sentence(**dict(ROW, phenotype="not specified")).replace(" ", "  \n", 3)
    got = parse_annotation("  " + text + " ")
    assert got["chrom"] == "chr17" and got["phenotype"] == "not specified"


@pytest.mark.parametrize("text, expected", [
    (None, {}),
    ("", {}),
    ("garbage </s> 123 dataset.", {}),
    # truncated in the description: fields before it only; no half value
    ("This sequence is part of chr1 chromosome part of TP53 gene. This gene is described as tumor pro",
     {"chrom": "chr1", "gene": "TP53"}),
    # truncated after the transcript type
    ("This sequence is part of chr1 chromosome part of TP53 gene. This gene is described as tumor "
     "protein p53 and a protein coding transcript type. It is of Li-Fraumeni",
     {"chrom": "chr1", "gene": "TP53", "description": "tumor protein p53",
      "transcript_type": "protein coding"}),
    # sentences dropped / reordered, no final period, "an" instead of "a", other case
    ("It is part of the dbSNP dataset. this gene is described as kinase and an lncRNA transcript type",
     {"source": "dbSNP", "description": "kinase", "transcript_type": "lncRNA"}),
    # repeated template: the first occurrence wins
    ("This sequence is part of chr2 chromosome part of A gene. It is of X phenotype. It is part of "
     "the COSMIC dataset. This sequence is part of chr3 chromosome part of B gene. It is part of the "
     "dbSNP dataset.",
     {"chrom": "chr2", "gene": "A", "phenotype": "X", "source": "COSMIC"}),
])
def test_broken_generations(text, expected):
    assert parse_annotation(text) == {k: expected.get(k) for k in SENTENCE_FIELDS}


def test_extra_text_around_a_full_sentence():
    got = parse_annotation("Annotation: " + annotation_sentence(**ROW) + " It is part of")
    assert got == EXPECTED


# ---------------------------------------------------------------------------- outcomes
@pytest.mark.parametrize("bp, text", [
    (0, "0 bp"), (850, "850 bp"), (999, "999 bp"), (1000, "1.0 kb"), (1049, "1.0 kb"),
    (1050, "1.1 kb"), (4200, "4.2 kb"), (9949, "9.9 kb"), (9950, "10 kb"), (9999, "10 kb"),
    (10000, "10 kb"), (12499, "12 kb"), (12500, "13 kb"), (1_234_567, "1235 kb"),
])
def test_distance_text_at_the_boundaries(bp, text):
    assert distance_text(bp) == text


def test_distance_text_refuses_a_negative_distance():
    with pytest.raises(ValueError, match="negative"):
        distance_text(-1)


def test_flank_text():
    assert flank_text("APP", 12_000) == "APP (12 kb)"
    assert flank_text("APP", None) == "APP"
    assert flank_text(None, 500) == flank_text("", None) == "no annotated gene"


def test_repeat_examples_are_up_to_three_distinct_names_in_order():
    text = repeat_sentence(14, ["TANGO2", None, "DGCR8", "TANGO2", "", "APP", "SOD1"])
    assert text == ("This sequence is a repeat: it matches 14 reference loci, among them TANGO2, "
                    "DGCR8 and APP; no single gene can be named.")
    assert "among them A and B;" in repeat_sentence(3, ["A", "B", "A"])
    assert "among them A;" in repeat_sentence(3, ["A"])
    assert "among them no annotated gene;" in repeat_sentence(5, [None, ""])


def test_similar_percentages_round_down():
    text = similar_sentence("chr21", "APP", 0.35, 0.8449)
    assert text == ("This sequence resembles part of chr21 chromosome in APP gene: 35 % of it "
                    "aligns at 84 % identity; no gene is claimed.")
    assert "in intergenic sequence: 99 % of it aligns at 29 %" in similar_sentence(
        "chr1", None, 0.996, 0.29)
    assert ": 100 % of it aligns at 0 % identity" in similar_sentence("chr1", None, 1.0, 0.0)


GENE_SENTENCE = annotation_sentence(**ROW)
OUTCOME_SENTENCES = {
    "gene": (GENE_SENTENCE, dict(EXPECTED)),
    "intergenic": (intergenic_sentence("chr21", "APP", 12_345, None, None),
                   {"chrom": "chr21", "left_gene": "APP"}),
    "intergenic-both": (intergenic_sentence("chr2", "MT-ND1", 850, "HLA-DRB1", 4_200),
                        {"chrom": "chr2", "left_gene": "MT-ND1", "right_gene": "HLA-DRB1"}),
    "repeat": (repeat_sentence(27, ["TANGO2", "DGCR8", "APP", "SOD1"]), {"loci": 27}),
    "similar": (similar_sentence("chrX", "DMD", 0.31, 0.87), {"chrom": "chrX", "similar_to": "DMD"}),
    "similar-intergenic": (similar_sentence("chr7", None, 0.5, 0.7), {"chrom": "chr7"}),
    "none": (NONE_SENTENCE, {}),
}
OUTCOME_KEYS = ["outcome", *SENTENCE_FIELDS, "left_gene", "right_gene", "loci", "similar_to"]


@pytest.mark.parametrize("name", OUTCOME_SENTENCES)
def test_each_outcome_sentence_round_trips(name):
    text, fields = OUTCOME_SENTENCES[name]
    outcome = name.split("-")[0]
    assert outcome in OUTCOMES
    assert parse_outcome(text) == {k: fields.get(k) for k in OUTCOME_KEYS} | {"outcome": outcome}


@pytest.mark.parametrize("name", OUTCOME_SENTENCES)
def test_outcome_is_decided_on_a_prefix_and_never_changes(name):
    text, _ = OUTCOME_SENTENCES[name]
    outcome = name.split("-")[0]
    seen = [outcome_of(text[:n]) for n in range(len(text) + 1)]
    first = seen.index(outcome)
    assert set(seen[:first]) == {None}
    assert set(seen[first:]) == {outcome}
    # decided by the opening words, well before the sentence ends
    assert first < 60


@pytest.mark.parametrize("name", OUTCOME_SENTENCES)
def test_deciding_end_is_where_the_outcome_becomes_decided(name):
    text, _ = OUTCOME_SENTENCES[name]
    end = deciding_end(text)
    # the shortest prefix that decides the outcome: one character less decides nothing
    assert outcome_of(text[:end]) == name.split("-")[0]
    assert outcome_of(text[: end - 1]) is None


def test_deciding_end_of_text_of_no_outcome():
    assert deciding_end("It is part of the ClinVar dataset.") == 0
    assert deciding_end("") == 0
    assert POSTER[: deciding_end(POSTER)] == "This sequence is part of chr1 chromosome part of"


def test_gene_and_intergenic_are_told_apart_only_after_the_chromosome():
    assert outcome_of("This sequence is part of chr21 chromosome") is None
    assert outcome_of("This sequence is part of chr21 chromosome part of") == "gene"
    assert outcome_of("this  sequence is part of chr21\nchromosome between") == "intergenic"


@pytest.mark.parametrize("text", [None, "", "garbage </s> 123", "It is part of the dbSNP dataset.",
                                  "This sequence is", "This sequence is a"])
def test_undecided_text_has_no_outcome(text):
    assert outcome_of(text) is None
    assert parse_outcome(text) == dict.fromkeys(OUTCOME_KEYS)


def test_parse_outcome_keeps_gene_fields_for_the_gene_sentence_only():
    # the gene sentence reads exactly as parse_annotation reads it
    assert {k: v for k, v in parse_outcome(GENE_SENTENCE).items() if k in SENTENCE_FIELDS} == (
        parse_annotation(GENE_SENTENCE))
    # a non-gene sentence followed by gene words claims no gene
    text = OUTCOME_SENTENCES["repeat"][0] + " It is part of the ClinVar dataset."
    assert parse_outcome(text)["source"] is None and parse_annotation(text)["source"] == "ClinVar"


@pytest.mark.parametrize("text, fields", [
    # truncated inside a flank or a target: no half value
    ("This sequence is part of chr21 chromosome between APP (12 kb) and DG",
     {"outcome": "intergenic", "chrom": "chr21"}),
    ("This sequence resembles part of chr21 chromosome in AP", {"outcome": "similar",
                                                                "chrom": "chr21"}),
    ("This sequence is a repeat: it matches 1", {"outcome": "repeat"}),
    ("This sequence is a repeat: it matches 12 reference loci", {"outcome": "repeat", "loci": 12}),
])
def test_truncated_outcome_sentences(text, fields):
    assert parse_outcome(text) == {k: fields.get(k) for k in OUTCOME_KEYS}
