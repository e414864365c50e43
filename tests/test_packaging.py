"""The built wheel: it must ship everything the CPU kernels need, so an installed (non-editable) package builds
them instead of silently falling back to the eager ops. `.ci/run` also installs the wheel into a fresh virtual
environment (.ci/check_install.py); this test builds it from a copy of the sources and runs from its contents."""
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CSRC = REPO / "mtnet_plugin" / "ops" / "csrc"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built from a copy of setup.py, README.md and mtnet_plugin/ (the build leaves build/ behind)."""
    src = tmp_path_factory.mktemp("src")
    shutil.copy(REPO / "setup.py", src)
    shutil.copy(REPO / "README.md", src)
    shutil.copytree(REPO / "mtnet_plugin", src / "mtnet_plugin", ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (found,) = out.glob("mtnet_plugin-*.whl")
    return found


def test_wheel_ships_every_kernel_source_and_included_header(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    files = sorted(p.name for p in CSRC.iterdir() if p.is_file())
    assert any(f.endswith(".h") for f in files)  # the case the glob must cover
    for name in files:
        assert f"mtnet_plugin/ops/csrc/{name}" in names, f"wheel lacks ops/csrc/{name}"
    for source in CSRC.glob("*.c"):
        for header in re.findall(r'#include\s+"([^"]+)"', source.read_text()):
            assert f"mtnet_plugin/ops/csrc/{header}" in names, f"{source.name} includes {header}, not in the wheel"


@pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None, reason="no C compiler to build the kernels")
def test_kernels_build_from_the_installed_wheel(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)  # a pure-Python wheel installs by unpacking
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MTNET_NATIVE")}
    env.update(PYTHONPATH=str(site), MTNET_NATIVE_CACHE=str(tmp_path / "cache"))
    code = ("import mtnet_plugin; from mtnet_plugin.ops import native; "
            "print(mtnet_plugin.__file__); print(native.available()); print(native.reason())")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    where, available, reason = done.stdout.strip().splitlines()[-3:]
    assert Path(where).resolve().is_relative_to(site.resolve()), where
    assert available == "True", f"kernels do not build from the wheel: {reason}"
