"""The code map (docs/architecture.md, its Layout section) names every module of the tree, and
only modules that exist; the README front page stays short and links every docs page; no lower
layer imports upward."""

import re

from .conftest import REPO_ROOT

CODE_DIRS = ("vit_locality", "benchmarks", "scripts", "configs")


def _code_map() -> str:
    page = (REPO_ROOT / "docs" / "architecture.md").read_text()
    section = page[page.index("\n## Layout\n") :]
    return section[section.index("```") + 3 : section.index("```", section.index("```") + 3)]


def test_every_module_of_the_package_is_in_the_code_map():
    code_map = _code_map()
    missing = [
        str(path.relative_to(REPO_ROOT))
        for path in sorted((REPO_ROOT / "vit_locality").rglob("*.py"))
        if path.name not in ("__init__.py", "__main__.py")
        and not re.search(rf"(?<![\w.]){re.escape(path.name)}\b", code_map)
    ]
    assert not missing, f"modules the code map (docs/architecture.md) does not name: {missing}"


def test_every_module_the_code_map_names_exists():
    existing = {path.name for d in CODE_DIRS for path in (REPO_ROOT / d).rglob("*.py")}
    named = set(re.findall(r"(?<![\w.])(\w+\.py)\b", _code_map()))
    assert named - existing == set(), f"the code map names missing modules: {named - existing}"
    folders = set(re.findall(r"(?<![\w./])([a-z_]+)/(?=\s)", _code_map()))
    missing = {
        f for f in folders if not any((REPO_ROOT / d / f).is_dir() for d in (".", *CODE_DIRS))
    }
    assert not missing, f"the code map names missing folders: {missing}"


LOWER_LAYERS = {  # package -> what it must not import (the layers above it)
    "vit_locality/workdir": ("vit_locality.evaluators", "vit_locality.train_state"),
    "vit_locality/models": ("vit_locality.data",),
    "vit_locality/augment": ("vit_locality.train", "vit_locality.step", "vit_locality.evaluators"),
}


def test_no_lower_layer_imports_upward():
    import ast

    upward = []
    for package, forbidden in LOWER_LAYERS.items():
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                elif isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                else:
                    continue
                upward += [
                    f"{path.relative_to(REPO_ROOT)} imports {name}"
                    for name in names
                    if any(name == f or name.startswith(f + ".") for f in forbidden)
                ]
    assert not upward


def test_the_front_page_is_short_and_links_every_docs_page():
    readme = (REPO_ROOT / "README.md").read_text()
    assert len(readme.encode()) < 12_000
    pages = sorted(p.name for p in (REPO_ROOT / "docs").glob("*.md"))
    assert [p for p in pages if f"(docs/{p})" not in readme] == []
