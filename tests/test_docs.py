"""The README stays one document: each section once, every in-page link to a section that is
there."""

from __future__ import annotations

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parent.parent


def _headings(text: str) -> list[str]:
    """Markdown headings outside code blocks (whose ``#`` lines are shell comments)."""
    fence = False
    headings = []
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{1,6} ", line):
            headings.append(line)
    return headings


def test_readme_has_each_section_once_and_its_links_resolve():
    """An edit once pasted a stale copy of six sections under the current ones; every
    ``(#anchor)`` link must name a heading (GitHub's anchors: lower case, punctuation dropped,
    spaces to dashes)."""
    text = (REPO / "README.md").read_text()
    headings = _headings(text)
    assert len(headings) > 10
    assert sorted({h for h in headings if headings.count(h) > 1}) == []
    anchors = {re.sub(r"[^\w\- ]", "", h.lstrip("#").strip().lower()).replace(" ", "-")
               for h in headings}
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links and links <= anchors, sorted(links - anchors)
