"""Llama-DNA: functional annotation of unknown human DNA sequences."""

__version__ = "0.1.0"
