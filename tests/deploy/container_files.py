"""Readers for the container files: a Dockerfile parser, .dockerignore matching, Compose defaults.

Small and strict on purpose: they understand what our Dockerfile and docker-compose.yml use
(continuation lines, comments, JSON-form CMD/HEALTHCHECK, ``${VAR:-default}``) and nothing more.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: ``keyword`` upper-cased, ``value`` with continuations joined."""

    keyword: str
    value: str
    line: int

    def json_args(self) -> list[str] | None:
        """The arguments of an exec-form (JSON array) instruction, else None.

        Words before the array other than ``--flags`` are kept in front: ``HEALTHCHECK
        --interval=5s CMD ["a"]`` gives ``["CMD", "a"]``, the form Compose's ``test`` uses.
        """
        head, bracket, tail = self.value.partition("[")
        if not bracket:
            return None
        parsed = json.loads(bracket + tail)
        if not isinstance(parsed, list) or not all(isinstance(a, str) for a in parsed):
            raise ValueError(f"line {self.line}: expected a JSON array of strings. Received: {self.value!r}")
        return [w for w in head.split() if not w.startswith("--")] + parsed

    def flags(self) -> dict[str, str]:
        """``--name=value`` options before the arguments (``COPY --from=``, ``HEALTHCHECK --interval=``)."""
        return dict(re.findall(r"--([a-z-]+)=(\S+)", self.value.split("[", 1)[0]))


@dataclass
class Stage:
    """The instructions of one ``FROM ... [AS name]`` stage."""

    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    """A parsed Dockerfile: global ``ARG`` defaults and stages in order."""

    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"no stage named {name!r}; stages: {[s.name for s in self.stages]}")


def logical_lines(text: str) -> list[tuple[int, str]]:
    """Joins backslash continuations and drops comments and blank lines; keeps the first line number."""
    result: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):  # comment lines inside a continuation are ignored
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].rstrip())
            continue
        pending.append(stripped)
        result.append((start, " ".join(p for p in pending if p)))
        pending = []
    if pending:
        raise ValueError(f"line {start}: the file ends inside a continuation")
    return result


def parse_dockerfile(path: Path) -> Dockerfile:
    """Parses ``path`` into global ARGs and stages."""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for number, line in logical_lines(path.read_text()):
        keyword, _, value = line.partition(" ")
        instruction = Instruction(keyword.upper(), value.strip(), number)
        if instruction.keyword == "FROM":
            words = instruction.value.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages and instruction.keyword == "ARG":
            arg_name, _, default = instruction.value.partition("=")
            global_args[arg_name] = default
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            raise ValueError(f"line {number}: {keyword} before the first FROM")
    return Dockerfile(global_args, stages)


def copy_sources(instruction: Instruction) -> list[str]:
    """The source paths of a shell-form COPY/ADD (options and destination removed)."""
    words = [w for w in shlex.split(instruction.value) if not w.startswith("--")]
    if len(words) < 2:
        raise ValueError(f"line {instruction.line}: COPY needs a source and a destination")
    return words[:-1]


def dockerignore_patterns(path: Path) -> list[str]:
    """The patterns of a .dockerignore file, in order (``!`` exceptions kept)."""
    return [line.strip() for line in path.read_text().splitlines()
            if line.strip() and not line.strip().startswith("#")]


def is_ignored(relative: str, patterns: list[str]) -> bool:
    """Whether ``relative`` (a path in the context) is left out: it or a parent matches, last match wins."""
    parts = Path(relative).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.strip("/")
        if any(_matches(candidate, body) for candidate in candidates):
            ignored = not negate
    return ignored


def _matches(path: str, pattern: str) -> bool:
    if pattern.startswith("**/"):
        tail = pattern[3:]
        parts = path.split("/")
        return any(fnmatch.fnmatchcase("/".join(parts[i:]), tail) for i in range(len(parts)))
    return fnmatch.fnmatchcase(path, pattern)


def with_defaults(value: Any) -> Any:
    """Resolves Compose ``${VAR:-default}`` / ``${VAR}`` interpolation with the defaults only."""
    if isinstance(value, str):
        return _INTERPOLATION.sub(lambda m: m.group("default") or "", value)
    if isinstance(value, list):
        return [with_defaults(v) for v in value]
    if isinstance(value, dict):
        return {k: with_defaults(v) for k, v in value.items()}
    return value


def load_compose(path: Path) -> dict[str, Any]:
    """A compose file as data, YAML anchors and merge keys resolved, interpolation left as written."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ValueError(f"{path}: expected a mapping with 'services'. Received: {type(data).__name__}")
    return data
