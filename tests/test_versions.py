from llamadna import __version__, package_versions


def test_package_versions_reads_installed_metadata():
    import numpy

    got = package_versions(("numpy", "no-such-package-llamadna"))
    assert got == {"llamadna": __version__, "numpy": numpy.__version__, "no-such-package-llamadna": None}
