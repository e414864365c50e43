"""docs/reliability.md is checked against the fault tests: rows name real tests, every fault test has a row, and a
row's status says "open (#N)" exactly when its test is still marked xfail with a reason citing
"docs/reliability.md #N"."""
import ast
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reliability.md"
FAULT_FILES = sorted((ROOT / "tests").glob("test_faults_*.py")) + [ROOT / "tests" / f for f in (
    "test_data_check.py", "test_ops_native.py", "test_config_honesty.py", "test_ops_kernel_guards.py")]
ROW_TEST = re.compile(r"`tests/(test_\w+\.py)::(test_\w+)`")


def _rows():
    """(test file, test name, status) of every table row that names a test."""
    rows = []
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        match = ROW_TEST.search(line)
        if line.startswith("|") and match:
            rows.append((match.group(1), match.group(2), cells[-1]))
    return rows


def _xfail_reason(func: ast.FunctionDef):
    """The reason of a ``pytest.mark.xfail(..., reason=...)`` decorator, or None."""
    for deco in func.decorator_list:
        if isinstance(deco, ast.Call) and ast.unparse(deco.func).endswith("mark.xfail"):
            for kw in deco.keywords:
                if kw.arg == "reason":
                    return ast.literal_eval(kw.value)
            return ""
    return None


def _tests():
    """{(file name, test name): xfail reason or None} for the fault test files."""
    found = {}
    for path in FAULT_FILES:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                found[(path.name, node.name)] = _xfail_reason(node)
    return found


def test_every_row_names_an_existing_fault_test():
    tests = _tests()
    rows = _rows()
    assert len(rows) >= 15
    missing = [(f, t) for f, t, _ in rows if (f, t) not in tests]
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"


def test_every_fault_test_has_a_row():
    named = {(f, t) for f, t, _ in _rows()}
    undocumented = [k for k in _tests() if k[0].startswith("test_faults_") and k not in named]
    assert not undocumented, f"fault tests without a row in docs/reliability.md: {undocumented}"


def test_status_matches_the_xfail_markers():
    tests = _tests()
    for file, name, status in _rows():
        reason = tests[(file, name)]
        if reason is None:
            assert status == "ok", f"{name} passes but its row says {status!r}"
        else:
            number = re.search(r"docs/reliability\.md #(\d+)", reason)
            assert number, f"{name}: xfail reason must cite 'docs/reliability.md #N': {reason!r}"
            assert status == f"open (#{number.group(1)})", f"{name} is xfail ({reason!r}) but its row says {status!r}"
