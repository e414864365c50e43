"""The package's floors import only downwards (docs/design.md): checked by reading every module's imports."""
import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "mtnet_plugin"

# What each floor may import from inside the package (itself included).
ALLOWED = {
    "ops": {"ops"},
    "layers": {"ops", "layers"},
    "models": {"ops", "layers", "models"},
    "config": {"layers", "config"},  # layers/options.py: the MTNET node's keys and defaults
    "data": {"config", "data"},
    "engine": {"ops", "layers", "models", "config", "data", "engine"},
    "benchmarks": {"ops", "layers", "models", "config", "data", "engine", "benchmarks"},
    "integrations": {"ops", "layers", "models", "config", "integrations"},
}


def _internal_imports(path: pathlib.Path):
    """Yield (line, floor) for every import of an mtnet_plugin sub-package in ``path``."""
    rel_parts = path.relative_to(PKG).parts
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(rel_parts[:-1])[: len(rel_parts) - node.level]
                mod = ".".join(["mtnet_plugin", *base] + ([node.module] if node.module else []))
                names = [mod] if node.module or base else [f"mtnet_plugin.{a.name}" for a in node.names]
            else:
                names = [node.module or ""]
        for name in names:
            parts = name.split(".")
            if parts[0] == "mtnet_plugin" and len(parts) > 1:
                yield node.lineno, parts[1]


def _modules():
    return sorted(p for p in PKG.rglob("*.py") if len(p.relative_to(PKG).parts) > 1)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_imports_point_down(path):
    floor = path.relative_to(PKG).parts[0]
    allowed = ALLOWED[floor]
    bad = [(line, f) for line, f in _internal_imports(path) if f not in allowed]
    assert not bad, f"{path.relative_to(PKG)} imports a floor above it: {bad}"


# ops/native.py builds and loads the fused C kernel: the standard library's compiler and ctypes plumbing, and
# the checks of its cache (owner, mode, a build lock).
NATIVE_LOADER_STDLIB = {"contextlib", "ctypes", "concurrent", "fcntl", "hashlib", "logging", "os", "pathlib",
                        "platform", "re", "shutil", "stat", "subprocess", "tempfile", "threading"}


def test_layers_leave_the_kernels_to_ops():
    # One door per op in ops/: no layer names the kernel module or decides itself whether a kernel runs.
    for path in (PKG / "layers").rglob("*.py"):
        assert "native" not in path.read_text(), path


def test_ops_import_torch_only():
    for path in (PKG / "ops").rglob("*.py"):
        allowed = {"torch", "math", "typing", "contextlib", "__future__", "mtnet_plugin"}
        if path.name == "native.py":
            allowed |= NATIVE_LOADER_STDLIB
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                tops = [(node.module or "").split(".")[0]]
            else:
                continue
            for top in tops:
                assert top in allowed, (path, top)


def test_package_import_never_imports_slowfast():
    import subprocess
    import sys

    code = "import sys, mtnet_plugin; assert 'slowfast' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
