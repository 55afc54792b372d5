"""YAML files read as node trees, so that every problem can name its file and line.

Cartography and Flow Matrix files are YAML 1.1 as PyYAML reads it. They are composed, not
constructed: each node keeps its start mark, and values are taken as the text written in
the file. That also keeps YAML 1.1 typing out of the way: `no` stays the word "no", `22:80`
is not read as the sexagesimal number 1360, and a port written `0x1bb` is refused.

The surprising thing: PyYAML's constructor silently keeps the last of two equal mapping
keys; walking the nodes ourselves lets a duplicated host or rule name be an error instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import yaml

from ..errors import UsageError

NULL_TAG = "tag:yaml.org,2002:null"
# libyaml's scanner when PyYAML was built with it: ten times faster on big files, same marks
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlFile:
    """One parsed YAML file: its root node and located errors."""

    def __init__(self, path: Path, *, what: str) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path}: {what} is not UTF-8 text ({exc.reason})") from None
        try:
            root = yaml.compose(text, Loader=LOADER)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = exc.problem or "syntax error"
            if exc.context and exc.context_mark is not None:
                problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
            raise UsageError(f"{path}{line}: YAML syntax error: {problem}") from None
        except yaml.YAMLError as exc:
            raise UsageError(f"{path}: YAML error: {exc}") from None
        if root is None or is_empty(root):
            raise UsageError(f"{path}:1: {what} is empty")
        self.root: yaml.Node = root

    def fail(self, node: yaml.Node, problem: str) -> NoReturn:
        raise UsageError(f"{self.path}:{line_of(node)}: {problem}")

    def mapping(
        self, node: yaml.Node, what: str, *, allowed: Iterable[str] | None = None
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Mapping node -> {key text: (key node, value node)}; duplicate or unknown keys fail."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping (key: value lines)")
        allowed_keys = set(allowed) if allowed is not None else None
        result: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.scalar(key_node, f"a key in {what}")
            if key in result:
                first = line_of(result[key][0])
                self.fail(key_node, f"duplicate {key!r} in {what} (first at line {first})")
            if allowed_keys is not None and key not in allowed_keys:
                expected = ", ".join(sorted(allowed_keys))
                self.fail(key_node, f"unknown key {key!r} in {what} (expected: {expected})")
            result[key] = (key_node, value_node)
        return result

    def scalar(self, node: yaml.Node, what: str) -> str:
        """Scalar node -> its text as written; a list, mapping or empty value fails."""
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, f"{what} must be a single value, not a list or mapping")
        if is_empty(node) or not str(node.value).strip():
            self.fail(node, f"{what} is empty")
        return str(node.value)

    def scalars(self, node: yaml.Node, what: str) -> list[tuple[yaml.Node, str]]:
        """A scalar or a list of scalars -> [(node, text)]; an empty list fails."""
        items = node.value if isinstance(node, yaml.SequenceNode) else [node]
        if not items:
            self.fail(node, f"{what} is an empty list")
        return [(item, self.scalar(item, f"an entry of {what}")) for item in items]


def line_of(node: yaml.Node) -> int:
    """1-based line where the node starts."""
    return int(node.start_mark.line) + 1


def is_empty(node: yaml.Node) -> bool:
    """A `key:` with nothing after it, or an explicit null."""
    return isinstance(node, yaml.ScalarNode) and (
        node.tag == NULL_TAG and node.value in ("", "~", "null", "Null", "NULL")
    )
