"""Evaluation of generated annotations.

`parse.parse_annotation` turns a generated sentence back into its fields (chrom, gene,
description, transcript_type, phenotype, dataset), so that predictions can be scored field by
field against the dataset's columns.
"""
