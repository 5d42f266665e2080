"""The README and the docs pages: every relative link resolves, and the README stays short.

The docs build (`make docs`, Sphinx with -W -n) checks the same links and much more, but it needs the
docs requirements; these checks run with the tests, and see the links as GitHub does: a relative
path to an existing file, and an anchor that one of that file's headings gives.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The site's pages (docs/conf.py's include_patterns) and the README.
PAGES = sorted({ROOT / "README.md", ROOT / "BENCHMARKS.md", ROOT / "QUALITY.md", ROOT / "benchmarks" / "CUDA_NOTES.md",
                ROOT / "styleswap_ext" / "models" / "weights" / "MODEL_CARD.md",
                ROOT / "styleswap_ext" / "apps" / "assets" / "CREDITS.md",
                *(ROOT / "docs").glob("*.md")})
README_MAX_WORDS = 1200  # issue 35: a newcomer's README on one screen; the rest goes to docs/

LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)\)")  # [text](target), ![alt](target)
FENCE = re.compile(r"^(```|~~~)")


def _prose_lines(text):
    """The lines outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def _slug(title):
    """A heading's anchor as GitHub (and MyST's github_slugify) makes it, from its text."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # a link's text only
    text = text.replace("`", "").replace("*", "").strip()
    return re.sub(r"[^\w\u4e00-\u9fff\- ]", "", text.lower().replace(" ", "-"))


def _anchors(path):
    seen, anchors = {}, set()
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        m = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = _slug(m.group(2))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _links(path):
    for line in _prose_lines(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)  # no links inside code spans
        yield from LINK.findall(line)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading of {dest.name} gives #{anchor}")
    assert not broken, f"{page.relative_to(ROOT)}: broken links:\n" + "\n".join(broken)


def test_every_docs_page_is_listed_in_the_index():
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    listed = {t.partition("#")[0] for t in LINK.findall(index)}
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.name != "index.md" and p.name not in listed]
    assert not missing, f"docs/index.md does not link to {missing}"


def test_readme_is_short():
    words = len((ROOT / "README.md").read_text(encoding="utf-8").split())  # as `wc -w` counts
    assert words <= README_MAX_WORDS, (f"README.md has {words} words, more than {README_MAX_WORDS}: "
                                       "move the detail to a page under docs/ and link it")


def test_link_checker_sees_broken_links(tmp_path):
    page = tmp_path / "page.md"
    (tmp_path / "other.md").write_text("# Other page\n\n## A `code` heading\n", encoding="utf-8")
    page.write_text("[ok](other.md#a-code-heading) [bad](missing.md) [bad anchor](other.md#nope)\n"
                    "```\n[in code](nothing.md)\n```\n`[in a span](nothing.md)`\n", encoding="utf-8")
    assert list(_links(page)) == ["other.md#a-code-heading", "missing.md", "other.md#nope"]
    assert _anchors(tmp_path / "other.md") == {"other-page", "a-code-heading"}
