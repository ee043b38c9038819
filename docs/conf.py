"""Sphinx configuration of the thermossl documentation site.

Build: pip install ".[docs]" && python -m sphinx -W --keep-going -b html docs build/docs
(CI builds it with warnings as errors). The API reference is generated from the docstrings of the
installed package.
"""
from importlib.metadata import version as _version

project = "thermossl"
author = "The thermossl developers"
copyright = "2026, The thermossl developers"
release = _version("thermossl")
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",  # the pages are Markdown, as the README and docs/theory.md
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",  # numpy-style docstrings, as numpy and scipy write them
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "api/generated/*.md"]
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

autosummary_generate = True
# A module page lists (and links a page for) what its __all__ exports, no more.
autosummary_ignore_module_all = False
templates_path = ["_templates"]
autodoc_typehints = "none"  # numpydoc's Parameters sections carry the types
autodoc_default_options = {"members": True, "undoc-members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
# Every documented function, class and method must say what it takes and what it gives back: a
# missing docstring (GL08), an undocumented parameter (PR01), a documented parameter the
# signature lacks (PR02), a parameter without a description (PR07), a "name: type" without the
# space before the colon (PR10), no Returns section for a function that returns a value (RT01), a
# return value without a description (RT03). With -W a failed check fails the build.
# (Raises sections are checked by tests/test_docstrings.py.)
numpydoc_validation_checks = {"GL08", "PR01", "PR02", "PR07", "PR10", "RT01", "RT03"}
# Objects not of this package's making, listed on the class pages: what the losses inherit from
# torch.nn.Module and thermossl.torch.SinkhornResult from tuple.
numpydoc_validation_exclude = {
    r"\.__init__$",
    r"\.__call__$",
    r"^thermossl\.torch\.(SwAVLoss|DINOLoss)\.(?!forward$|update_center$)\w+$",
    r"^thermossl\.torch\.SinkhornResult\.(count|index)$",
}

html_theme = "pydata_sphinx_theme"
html_title = "thermossl"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_static_path = []
