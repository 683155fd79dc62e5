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


def machine_record() -> dict[str, str | int]:
    """What of the machine decides training's floating-point results besides the package versions
    (recorded beside a trained model as "machine"): the architecture, the CPU's model name (Linux:
    /proc/cpuinfo; else what `platform` says, "" where it says nothing), the instruction set
    torch's CPU kernels dispatch to (AVX512, AVX2, ...; `ATEN_CPU_CAPABILITY` lowers it) and
    torch's thread count: one install, code, data and seed train other weights on a machine whose
    kernels round differently (docs/RESULTS.md, fifteenth pass of issue 29)."""
    import platform

    import torch

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"arch": platform.machine(), "cpu": cpu,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "torch_threads": torch.get_num_threads()}


def provenance() -> dict[str, dict]:
    """What trained a model or encoder, recorded beside it: {"versions": `package_versions()`,
    "machine": `machine_record()`}."""
    return {"versions": package_versions(), "machine": machine_record()}
