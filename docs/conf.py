"""Sphinx configuration of the styleswap docs site: ``make docs`` (docs/development.md).

The source directory is the repository root, so that README.md, BENCHMARKS.md, QUALITY.md and the
pages under docs/ are all pages of the site and their relative links (``docs/cli.md``,
``../BENCHMARKS.md``) work both on GitHub and here; ``include_patterns`` lists what is a page.
Build (warnings are errors; nitpicky, so every cross-reference must resolve)::

    python -m sphinx -W --keep-going -n -c docs -b html . build/docs
"""

import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)  # the checkout (autodoc imports styleswap_ext: build the extension first)

import styleswap_ext  # noqa: E402
from sphinx.util.nodes import make_refnode  # noqa: E402

project = "styleswap"
author = "the styleswap developers"
copyright = "the styleswap developers"
version = release = styleswap_ext.__version__

root_doc = "docs/index"
include_patterns = [
    "README.md",
    "BENCHMARKS.md",
    "QUALITY.md",
    "benchmarks/CUDA_NOTES.md",
    "styleswap_ext/apps/assets/CREDITS.md",
    "styleswap_ext/models/weights/MODEL_CARD.md",
    "docs/*.md",
]

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxarg.ext",
]

# --- Markdown (MyST) ---
myst_heading_anchors = 3  # `[text](page.md#a-heading)` links, as GitHub makes them
myst_enable_extensions = ["dollarmath"]
smartquotes = False  # keep "--flag" in generated text (argparse group titles) as typed

# --- API reference (autodoc, Google-style docstrings) ---
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_param = False  # "patch_size, stride: ..." stays one entry, not one copy per name
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_class_signature = "separated"
autodoc_inherit_docstrings = False  # else nn.Module.forward's docstring, with its torch references

# Nitpicky mode checks every cross-reference. Without network access there is no intersphinx
# inventory for torch, PIL and the standard library, so their types cannot resolve: allow them.
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|PIL|numpy|pathlib|os|typing|collections\.abc)(\..*)?"),
]

# --- HTML ---
html_theme = "furo"
html_title = f"styleswap {release}"


def _front_page(app, exception):
    """``build/docs/index.html``: a redirect to the front page, which is ``docs/index.html`` since the
    source directory is the repository root."""
    if exception is None and app.builder.format == "html":
        with open(os.path.join(app.outdir, "index.html"), "w", encoding="utf-8") as f:
            f.write('<!DOCTYPE html>\n<meta charset="utf-8">\n<title>styleswap</title>\n'
                    '<meta http-equiv="refresh" content="0; url=docs/index.html">\n'
                    '<a href="docs/index.html">styleswap documentation</a>\n')


def _short_names(app, env, node, contnode):
    """Resolve a short name in a docstring (``:class:`StyleBank``` in ``pipeline.stylize``, which the
    reference shows as ``styleswap_ext.stylize``) to the one documented object of that name, as an
    explicit ``:class:`.StyleBank``` would. A name that matches no object or several stays
    unresolved, and nitpicky mode reports it."""
    if node.get("refdomain") != "py" or node.get("refspecific"):
        return None
    domain = env.get_domain("py")
    matches = domain.find_obj(env, None, None, node["reftarget"], node.get("reftype"), searchmode=1)
    # a name a package re-exports (styleswap_ext.pipeline.StyleBank) is also registered under the module that
    # defines it (pipeline.stylization.StyleBank, an alias): one object, not two
    matches = [m for m in matches if not getattr(m[1], "aliased", False)] or matches
    if len(matches) != 1:
        return None
    name, obj = matches[0]
    return make_refnode(app.builder, node["refdoc"], obj.docname, obj.node_id, contnode, name)


def setup(app):
    app.connect("missing-reference", _short_names)
    app.connect("build-finished", _front_page)
