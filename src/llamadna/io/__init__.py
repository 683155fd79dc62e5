"""Torch-free readers for the standard genomic formats, returning DataFrames/arrays.

Coordinate convention: files are 1-based inclusive; in memory, reference sequences are
0-based half-open (`start0`, `end0`). Tables that the dataset carries stay 1-based inclusive.
"""
