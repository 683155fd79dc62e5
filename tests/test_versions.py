import pytest

from llamadna import __version__, package_versions


def test_package_versions_reads_installed_metadata():
    import numpy

    got = package_versions(("numpy", "no-such-package-llamadna"))
    assert got == {"llamadna": __version__, "numpy": numpy.__version__, "no-such-package-llamadna": None}


def test_machine_record_names_the_kernels_torch_dispatches_to():
    import platform

    import torch

    from llamadna import machine_record

    got = machine_record()
    assert got["arch"] == platform.machine() and isinstance(got["cpu"], str)
    assert got["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert got["torch_threads"] == torch.get_num_threads() >= 1


@pytest.mark.slow
def test_machine_record_follows_a_lowered_capability():
    """ATEN_CPU_CAPABILITY=default makes torch dispatch to its plain kernels: the record says so
    (a model trained that way rounds as one on a machine without AVX would)."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "ATEN_CPU_CAPABILITY": "default"}
    out = subprocess.run([sys.executable, "-c", "import json; from llamadna import machine_record; "
                          "print(json.dumps(machine_record()))"], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1])["torch_cpu_capability"] == "DEFAULT"
