import polars as pl
import pytest

from llamadna.constants import ANNOTATION_TEMPLATE
from llamadna.data.template import SENTENCE_FIELDS, annotation_expr, annotation_sentence, parse_annotation

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
