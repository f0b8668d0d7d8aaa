"""The README and the docs pages hold together: every relative link points at a file that exists
(and at a heading of it, when the link names one), the README stays short -- the depth lives
in docs/, linked from it -- and docs/DESIGN.md's module map names the layers and files there
are."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _import_graph import layer_table

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 230
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The text outside code blocks and inline code (a `[i](x)` in code is not a link)."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchors(page: Path) -> set[str]:
    """GitHub's heading ids: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    for line in prose(page.read_text()).splitlines():
        heading = re.match(r"#{1,6} (.+)", line)
        if heading:
            text = heading.group(1).strip().lower().replace("`", "")
            found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(prose(page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", t)]  # http:, https:, mailto: are not ours


def test_the_pages_link_to_each_other():
    assert {"docs/recipes.md", "docs/figures.md", "docs/checkpoints.md"} <= set(
        relative_links(ROOT / "README.md"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, broken


def test_every_quoted_script_exists():
    """`python3 benchmarks/x.py` and `bash benchmarks/x.sh` in the pages name files that exist
    (the `cli.py` and `python -m toolkit...` commands are run by test_documented_commands.py and
    test_documented_modules.py)."""
    quoted = {m for page in PAGES
              for m in re.findall(r"(?:python3?|bash) ((?:benchmarks|tests)/[\w/.-]+)", page.read_text())}
    assert {"benchmarks/coverage_table.py", "benchmarks/gpu_check.sh"} <= quoted
    assert [q for q in sorted(quoted) if not (ROOT / q).is_file()] == []


def test_the_module_map_is_the_code():
    """DESIGN.md numbers the layers of tests/test_layers.py, each folder once, shows every folder
    in its layout, and every `toolkit/...py` file it names exists."""
    text = (ROOT / "docs" / "DESIGN.md").read_text()
    layers = text.split("\n## Layout")[0]
    table = {prefix.removeprefix("toolkit."): rank for prefix, rank in layer_table(ROOT).items()}
    numbered = {folder: int(rank) for rank, folder in
                re.findall(r"(\d+)\. `toolkit/(\w+)/`", layers)}
    assert {f: table[f] for f in numbered} == numbered
    assert [f for f in table if f"`toolkit/{f}/`" not in layers] == []
    layout = re.search(r"## Layout.*?```\n(.*?)```", text, re.S).group(1)
    folders = sorted(p.name for p in (ROOT / "toolkit").iterdir() if (p / "__init__.py").is_file())
    assert [f for f in folders if f"toolkit/{f}/" not in layout] == []
    named = sorted(set(re.findall(r"toolkit/[\w/]+\.py", text)))
    assert [n for n in named if not (ROOT / n).is_file()] == []


def test_the_readme_stays_short():
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): move the depth to docs/")


def test_the_readme_opens_with_the_user_paths():
    """What it is, set up, quickstart, Python use, then the links; no figures before them."""
    headings = re.findall(r"^## (.+)$", prose((ROOT / "README.md").read_text()), re.M)
    assert headings == ["Set up", "Quickstart", "Python", "Where to go next"]
