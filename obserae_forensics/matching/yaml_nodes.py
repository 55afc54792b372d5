"""YAML files read as node trees, so that every problem can name its file and line.

Cartography and Flow Matrix files are YAML 1.1 as PyYAML reads it. They are composed, not
constructed: each node keeps its start mark, and values are taken as the text written in
the file. That also keeps YAML 1.1 typing out of the way: `no` stays the word "no", `22:80`
is not read as the sexagesimal number 1360, and a port written `0x1bb` is refused.

The surprising thing: PyYAML's constructor silently keeps the last of two equal mapping
keys; walking the nodes ourselves lets a duplicated host or rule name be an error instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import numpy as np
import yaml

from ..errors import UsageError

NULL_TAG = "tag:yaml.org,2002:null"
# libyaml's scanner when PyYAML was built with it: ten times faster on big files, same marks
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Nesting deeper than this is refused before parsing: libyaml's composer recurses in C, and
# 80,000 brackets overflowed its stack (a segmentation fault, no error to catch); no file of
# ours needs more than a handful of levels.
MAX_NESTING = 100
# Values a file may expand to (aliases share nodes: nine levels of nine aliases each is 387
# million values to anything that walks them)
MAX_VALUES = 1_000_000
_OPENERS = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSERS = np.frombuffer(b"]}", dtype=np.uint8)


class YamlFile:
    """One parsed YAML file: its root node and located errors."""

    def __init__(self, path: Path, *, what: str, allow_empty: bool = False) -> None:
        """`allow_empty`: an empty file sets `empty` (its root a null node) instead of an
        error."""
        self.path = path
        try:
            data = path.read_bytes()
            # as read_text gives it: line ends made "\n", so that lines count the same
            text = data.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        except OSError as exc:
            raise UsageError(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise UsageError(f"{path}: {what} is not UTF-8 text ({exc.reason})") from None
        # of the bytes parsed, for the manifest: hashed at the run's end, a file edited
        # while the run went was cited as the run had read the edit (a review)
        self.sha256 = hashlib.sha256(data).hexdigest()
        depth = nesting_depth(text)
        if depth > MAX_NESTING:
            raise UsageError(f"{path}: {what} nests {depth} levels deep (at most {MAX_NESTING})")
        try:
            root = yaml.compose(text, Loader=LOADER)
        except RecursionError:
            raise UsageError(f"{path}: {what} nests too deeply") from None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = exc.problem or "syntax error"
            if exc.context and exc.context_mark is not None:
                problem += f" ({exc.context} at line {exc.context_mark.line + 1})"
            raise UsageError(f"{path}{line}: YAML syntax error: {problem}") from None
        except yaml.reader.ReaderError as exc:  # a control character: one line, located
            line_number = text.count("\n", 0, exc.position) + 1
            code = exc.character if isinstance(exc.character, int) else ord(exc.character)
            raise UsageError(
                f"{path}:{line_number}: character U+{code:04X} is not allowed in YAML "
                "(control characters are not)"
            ) from None
        except yaml.YAMLError as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UsageError(f"{path}: YAML error: {first}") from None
        self.empty = root is None or is_empty(root)
        if self.empty and not allow_empty:
            raise UsageError(f"{path}:1: {what} is empty")
        self.root: yaml.Node = root if root is not None else yaml.ScalarNode(NULL_TAG, "")

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


def nesting_depth(text: str) -> int:
    """An upper bound of the file's nesting: the deepest run of open flow brackets plus the
    widest indentation (each block level indents at least one more column). Brackets inside
    quotes count too; a file would need a hundred of them unclosed to be refused for it."""
    codes = np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8)
    steps = np.isin(codes, _OPENERS).astype(np.int64) - np.isin(codes, _CLOSERS).astype(np.int64)
    level = np.cumsum(steps)
    # a closer with nothing open is ignored: measure from the lowest level reached so far
    deepest = int((level - np.minimum.accumulate(np.minimum(level, 0))).max()) if len(level) else 0
    widest = max(
        (
            len(line) - len(line.lstrip(" "))
            for line in text.splitlines()
            if line.strip() and not line.lstrip(" ").startswith("#")
        ),
        default=0,
    )
    return deepest + widest // 2


def plain_values(source: YamlFile, node: yaml.Node, budget: list[int] | None = None) -> object:
    """A node tree as Python values, typed as a reader of the file expects and no more:
    mappings (a duplicate key fails, naming both lines), lists, and scalars as written,
    except plain integers, decimals, true/false and null. YAML 1.1's other implicit types are
    left as text: `2024-13-01` (a date; an impossible one raised out of PyYAML) or `1:30`
    (sexagesimal 90) are then refused by the setting that reads them, as any other text."""
    if budget is None:
        budget = [MAX_VALUES]
    budget[0] -= 1
    if budget[0] < 0:
        source.fail(node, f"more than {MAX_VALUES} values (aliases expanding?)")
    if isinstance(node, yaml.MappingNode):
        result: dict[object, object] = {}
        lines: dict[object, int] = {}
        for key_node, value_node in node.value:
            key = plain_values(source, key_node, budget)
            if not isinstance(key, str | int | float | bool) and key is not None:
                source.fail(key_node, "a key must be a single value")
            if key in lines:
                source.fail(key_node, f"duplicate key {key!r} (first at line {lines[key]})")
            lines[key] = line_of(key_node)
            result[key] = plain_values(source, value_node, budget)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [plain_values(source, item, budget) for item in node.value]
    return _scalar_value(node)


def _scalar_value(node: yaml.Node) -> object:
    text = str(node.value)
    if getattr(node, "style", None) not in (None, ""):  # quoted or block (libyaml: "" is plain)
        return text
    if is_empty(node):
        return None
    if text in ("true", "True", "TRUE", "false", "False", "FALSE"):
        return text.lower() == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    return text


_INT = re.compile(r"[-+]?[0-9]+")
_FLOAT = re.compile(r"[-+]?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|[-+]?[0-9]+[eE][-+]?[0-9]+")
