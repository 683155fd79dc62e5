"""Llama-DNA: functional annotation of unknown human DNA sequences."""

__version__ = "0.1.0"

# The installed packages whose versions decide what training computes (recorded beside a trained
# model: the same code, data and seed train other weights under other versions).
NUMERIC_PACKAGES = ("torch", "transformers", "tokenizers", "peft", "accelerate", "numpy", "polars",
                    "faiss-cpu", "mappy", "scikit-learn")


def package_versions(names=NUMERIC_PACKAGES) -> dict[str, str | None]:
    """llamadna's version and each installed package's (None: not installed), read from the
    installed distributions' metadata (nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"llamadna": __version__}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out
