"""The code's layout as docs/development.md states it: scripts at the top, the library in alexnet_tf/, nothing in the
package importing a top-level module, no import circle, no module over MAX_LINES, no sys.path edits, and the
package installable so that `import alexnet` works from any folder."""

import ast
import glob
import os
import subprocess
import sys

from conftest import ROOT, SCRIPT_ENV

PACKAGE = "alexnet_tf"
MAX_LINES = 450  # docs/development.md


def python_files():
    return sorted(
        os.path.relpath(path, ROOT)
        for pattern in ("*.py", f"{PACKAGE}/*.py", "benchmarks/*.py", "tests/*.py")
        for path in glob.glob(os.path.join(ROOT, pattern))
    )


def imported_modules(path):
    """The top-level names of every module `path` imports, at module level or inside functions."""
    tree = ast.parse(open(os.path.join(ROOT, path)).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
            names.add(node.module)
    return names


def top_level_modules():
    return {os.path.basename(path)[:-3] for path in glob.glob(os.path.join(ROOT, "*.py"))}


def test_nothing_in_the_package_imports_a_top_level_module():
    top = top_level_modules()
    for path in glob.glob(os.path.join(ROOT, PACKAGE, "*.py")):
        imported = {name.split(".")[0] for name in imported_modules(os.path.relpath(path, ROOT))}
        assert not imported & top, f"{path} imports {imported & top}"


def test_the_package_has_no_import_circle():
    modules = [os.path.basename(path)[:-3] for path in glob.glob(os.path.join(ROOT, PACKAGE, "*.py"))]
    graph = {
        module: {
            name.split(".")[1]
            for name in imported_modules(os.path.join(PACKAGE, f"{module}.py"))
            if name.startswith(f"{PACKAGE}.") and name.split(".")[1] in modules and name.split(".")[1] != module
        }
        for module in modules
    }
    done, path = set(), []

    def visit(module):
        assert module not in path, f"import circle: {' -> '.join([*path[path.index(module) :], module])}"
        if module in done:
            return
        path.append(module)
        for each in graph[module]:
            visit(each)
        path.pop()
        done.add(module)

    for module in modules:
        visit(module)
    assert graph["startup"] == set() and graph["errors"] == set()  # the ground floor


def test_no_module_is_over_the_line_limit_and_none_edits_sys_path():
    for path in python_files():
        text = open(os.path.join(ROOT, path)).read()
        assert text.count("\n") <= MAX_LINES, f"{path} has {text.count(chr(10))} lines"
        assert not any(f"sys.path.{edit}(" in text for edit in ("insert", "append")), path


def test_pip_install_makes_alexnet_importable_from_any_folder(installed, tmp_path):
    """What `pip install .` installs, imported from another folder without the clone."""
    check = "import alexnet, data_reader; print(alexnet.__file__); print(alexnet.AlexNet(weights=None).count_params())"
    result = subprocess.run(
        [sys.executable, "-c", check],
        cwd=tmp_path,
        env={**SCRIPT_ENV, "PYTHONPATH": installed},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    module_file, parameters = result.stdout.split()
    assert module_file.startswith(installed) and int(parameters) == 62_378_344
