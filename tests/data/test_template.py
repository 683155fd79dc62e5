import polars as pl

from llamadna.data.template import annotation_expr, annotation_sentence

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
