"""The shell blocks of README.md and docs/*.md, with where they are and whether they must run.

A fenced block whose language is ``bash``, ``sh``, ``shell`` or ``console`` is an example the
docs test runs, unless the line just before its opening fence (blank lines aside) is an HTML
comment ``<!-- not-tested: reason -->``; the reason is required (docs/architecture.md states
the convention).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)")
_NOT_TESTED = re.compile(r"^\s*<!--\s*not-tested:\s*(?P<reason>\S.*?)\s*-->\s*$")


@dataclass(frozen=True)
class ShellBlock:
    """One shell example: its file, the line of its opening fence, its text, why it is skipped."""

    path: Path
    line: int
    text: str
    not_tested: str | None

    def where(self, root: Path) -> str:
        """``docs/serving.md:41``, for test ids and failure messages."""
        return f"{self.path.relative_to(root)}:{self.line}"


def documents(root: Path) -> list[Path]:
    """README.md and every docs/*.md of the repository at ``root``."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def shell_blocks(path: Path) -> list[ShellBlock]:
    """The shell blocks of one Markdown file, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[ShellBlock] = []
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        fence, language = opening.group(1), opening.group(2).lower()
        end = index + 1
        while end < len(lines) and not lines[end].strip().startswith(fence):
            end += 1
        if language in SHELL_LANGUAGES:
            blocks.append(ShellBlock(path, index + 1, "\n".join(lines[index + 1:end]) + "\n",
                                     _skip_reason(lines, index)))
        index = end + 1
    return blocks


def _skip_reason(lines: list[str], fence_index: int) -> str | None:
    before = fence_index - 1
    while before >= 0 and not lines[before].strip():
        before -= 1
    if before < 0:
        return None
    found = _NOT_TESTED.match(lines[before])
    return found.group("reason") if found else None
