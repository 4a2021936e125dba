"""The API reference (docs/api/*.md) lists every public name of every public module."""

import importlib
import inspect
import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
MODULES = [
    "factorkit.fit",
    "factorkit.methods",
    "factorkit.methods.ebmf",
    "factorkit.methods.embeddings",
    "factorkit.methods.sparse_coding",
    "factorkit.methods.bsc",
    "factorkit.problems.patches",
    "factorkit.models",
    "factorkit.problems",
    "factorkit.optim",
    "factorkit.prox",
    "factorkit.linalg",
    "factorkit.experiments",
]


def public_names(name: str) -> set[str]:
    module = importlib.import_module(name)
    if hasattr(module, "__all__"):
        return set(module.__all__)
    return {
        key
        for key, value in vars(module).items()
        if not key.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == name
    }


def documented() -> set[str]:
    """The last component of every ``::: path`` directive in the API pages."""
    names = set()
    for page in (DOCS / "api").glob("*.md"):
        names |= {
            m.group(1).rsplit(".", 1)[-1] for m in re.finditer(r"^::: ([\w.]+)", page.read_text(), re.M)
        }
    return names


@pytest.mark.skipif(not (DOCS / "api").is_dir(), reason="docs/ not in this checkout")
@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_is_in_the_api_reference(module):
    missing = public_names(module) - documented()
    assert not missing, f"{module}: {sorted(missing)} missing from docs/api/"


def test_every_api_page_is_in_the_site_navigation():
    nav = (DOCS.parent / "mkdocs.yml").read_text()
    for page in (DOCS / "api").glob("*.md"):
        assert f"api/{page.name}" in nav
    for page in (DOCS / "guide").glob("*.md"):
        assert f"guide/{page.name}" in nav
