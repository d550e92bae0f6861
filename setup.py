"""Map the top-level stage folders into the ``mamakit`` import namespace.

``core/`` -> ``mamakit``, ``teacher/`` -> ``mamakit.teacher``, ``student/`` -> ``mamakit.student``,
``export/`` -> ``mamakit.export``, ``runtime/`` -> ``mamakit.runtime``. Sub-packages are found by
walking each folder, so a new sub-package needs no change here. Metadata lives in pyproject.toml.
"""
from pathlib import Path

from setuptools import setup

ROOTS = {"mamakit": "core", "mamakit.teacher": "teacher", "mamakit.student": "student",
         "mamakit.export": "export", "mamakit.runtime": "runtime"}
DATA = ("*.yaml", "*.json", "*.onnx", "*.npz", "*.md", "*.html", "*.js", "*.css", "*.png")


def _packages():
    here = Path(__file__).parent
    found = []
    for name, folder in ROOTS.items():
        base = here / folder
        for init in sorted(base.rglob("__init__.py")):
            rel = init.parent.relative_to(base)
            if any(part.startswith((".", "__")) for part in rel.parts):
                continue
            found.append(".".join((name, *rel.parts)) if rel.parts else name)
    return found


def _package_data(packages):
    here = Path(__file__).parent
    data = {}
    for pkg in packages:
        root = next(n for n in sorted(ROOTS, key=len, reverse=True) if pkg == n or pkg.startswith(n + "."))
        folder = here / ROOTS[root] / Path(*pkg[len(root):].split(".")[1:])
        files = []
        for pattern in DATA:
            for f in folder.rglob(pattern):
                # data files in non-package sub-folders (e.g. runtime/bundles/default/)
                rel = f.relative_to(folder)
                owner = f.parent
                if owner != folder and (owner / "__init__.py").exists():
                    continue
                files.append(str(rel))
        if files:
            data[pkg] = sorted(set(files))
    return data


PACKAGES = _packages()
setup(packages=PACKAGES, package_dir=ROOTS, package_data=_package_data(PACKAGES))
