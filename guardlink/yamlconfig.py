"""YAML configuration files read into pydantic models, every problem reported as `file:line:col: message`."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
ID_HELP = "lowercase letters, digits, '-' and '_', starting with a letter or digit"


class ConfigError(Exception):
    """A configuration file is invalid; each message reads `file:line:col: message`, in file order."""

    def __init__(self, messages: list[str]) -> None:
        messages = sorted(messages, key=_position)
        super().__init__("\n".join(messages))
        self.messages = messages


def _position(message: str) -> tuple[str, int, int]:
    match = re.match(r"^(.*?):(\d+):(\d+): ", message)
    return (match[1], int(match[2]), int(match[3])) if match else (message, 0, 0)


def read_text(path: Path, what: str) -> str:
    """A configuration file's text; ConfigError when it cannot be read or is not UTF-8."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read {what}: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raw = exc.object[: exc.start]
        line, col = raw.count(b"\n") + 1, exc.start - (raw.rfind(b"\n") + 1) + 1
        raise ConfigError([f"{path}:{line}:{col}: the {what} is not UTF-8 text (byte {exc.object[exc.start]:#04x})"]) from None


def compose(text: str, filename: str, needs: str, shape: str) -> tuple[yaml.Node, dict[str, Any], list[str]]:
    """The YAML node tree (for positions), the data, and duplicate-key errors; ConfigError if it is no YAML mapping.

    `needs` completes "the file is empty; ..." and `shape` says what the file should be.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise ConfigError([f"{where}: invalid YAML: {exc.problem or exc}"]) from None
    except yaml.reader.ReaderError as exc:  # a control character: carries a position, not a mark
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        raise ConfigError([f"{filename}:{line}:{col}: invalid YAML: control character U+{exc.character:04X} is not allowed"]) from None
    if root is None:
        raise ConfigError([f"{filename}:1:1: the file is empty; {needs}"])
    errors = [f"{at(filename, node)}: duplicate key {key!r}" for key, node in _duplicate_keys(root)]
    data = yaml.SafeLoader(text).get_single_data()
    if not isinstance(data, dict):
        raise ConfigError([f"{at(filename, root)}: {shape}"])
    return root, data, errors


def validation_errors(exc: ValidationError, root: yaml.Node, filename: str, skip: Collection[tuple] = ()) -> list[str]:
    """pydantic's errors, each placed at its YAML node; errors at the locations in `skip` are left out."""
    errors = []
    for err in exc.errors():
        if tuple(err["loc"]) in skip:
            continue
        node, loc = node_at(root, err["loc"])
        if err["type"] == "extra_forbidden":  # point at the misspelt key, not at its value
            node = key_node(node_at(root, err["loc"][:-1])[0], err["loc"][-1]) or node
        field = ".".join(str(p) for p in loc) or "(top level)"
        errors.append(f"{at(filename, node)}: {field}: {_explain(err)}")
    return errors


def at(filename: str, node: yaml.Node) -> str:
    """`file:line:col` of a node."""
    return f"{filename}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def node_at(root: yaml.Node, loc: tuple) -> tuple[yaml.Node, tuple]:
    """The deepest YAML node along a pydantic error location (and the path that reached it)."""
    node, reached = root, []
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == str(part):
                    child = value
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                reached.append(part)  # a missing key: point at the mapping that lacks it
                continue
            break
        node = child
        reached.append(part)
    return node, tuple(reached) if reached else tuple(loc)


def key_node(mapping: yaml.Node, name: object) -> yaml.Node | None:
    """The key node `name` of a mapping node."""
    if isinstance(mapping, yaml.MappingNode):
        return next((key for key, _ in mapping.value if key.value == str(name)), None)
    return None


def _explain(err: Mapping[str, Any]) -> str:
    if err["type"] == "string_pattern_mismatch":
        return f"{err['input']!r} is not a valid id ({ID_HELP})"
    if err["type"] == "extra_forbidden":
        return "unknown key (check the spelling)"
    if err["type"] == "missing":
        return "required but missing"
    return err["msg"].removeprefix("Value error, ")


def _duplicate_keys(node: yaml.Node) -> Iterator[tuple[str, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    yield key.value, key
                seen.add(key.value)
            yield from _duplicate_keys(value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            yield from _duplicate_keys(item)
