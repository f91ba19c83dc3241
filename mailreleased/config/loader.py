"""Load a YAML config file into a frozen :class:`Config`, with located errors.

Every error names the file, the line, the key path, the bad value and the fix,
and is raised as :class:`ConfigError` before any network I/O happens.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel

from mailreleased.config.model import Config
from mailreleased.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/mailreleased/mailreleased.yaml")
CONFIG_ENV = "MAILRELEASED_CONFIG"

LinePath = tuple[str | int, ...]
# Far above any real config; a larger file is a wrong path, and parsing it would take minutes.
MAX_CONFIG_BYTES = 1024 * 1024


def default_config_path() -> Path:
    """Return ``$MAILRELEASED_CONFIG`` if set, else the system-wide default path."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG_PATH)


def load_config(path: Path) -> Config:
    """Read, parse and validate the config file at ``path``."""
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file is {size} bytes, more than the {MAX_CONFIG_BYTES} a config may have; "
                "check that -c names the right file",
                source=str(path),
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"config file not found; create it (see config/mailreleased.yaml) or pass -c FILE or set {CONFIG_ENV}",
            source=str(path),
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file cannot be read: {exc}", source=str(path)) from None
    return parse_config(text, source=str(path))


def parse_config(text: str, *, source: str = "<config>") -> Config:
    """Parse YAML text and validate it into a :class:`Config`."""
    data, lines = _parse_yaml(text, source)
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping with at least a 'targets' list", source=source, line=1)
    try:
        return Config.model_validate(data)
    except pydantic.ValidationError as exc:
        raise _first_error(exc, data, lines, source) from None


def _parse_yaml(text: str, source: str) -> tuple[Any, dict[LinePath, int]]:
    """Parse YAML safely; return the data and a map from key path to 1-based line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(
            f"malformed YAML: {problem}; check the indentation and quoting near this line",
            source=source,
            line=line,
        ) from None
    except yaml.reader.ReaderError as exc:
        # PyYAML rejects control characters before parsing; its message spans lines and has no line number.
        character = chr(exc.character) if isinstance(exc.character, int) else exc.character
        raise ConfigError(
            f"invalid character {character!r} in the config file; remove control characters",
            source=source,
            line=text.count("\n", 0, exc.position) + 1,
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", source=source) from None
    except RecursionError:
        raise ConfigError(
            "malformed YAML: the document is nested too deeply; flatten it", source=source, line=1
        ) from None
    except (ValueError, OverflowError) as exc:
        # PyYAML raises a bare ValueError or OverflowError for an escape beyond Unicode, such as "\U00110000".
        raise ConfigError(
            f"malformed YAML: {exc}; check the escape sequences in double-quoted strings", source=source
        ) from None
    lines: dict[LinePath, int] = {}
    if node is not None:
        try:
            _index_lines(node, (), lines, set())
        except _DuplicateKey as dup:
            raise ConfigError(
                f"key {dup.key!r} appears twice in the same mapping (lines {dup.first} and {dup.again}); "
                "keep one of them",
                source=source,
                line=dup.again,
                key_path=format_key_path((*dup.path, dup.key)),
            ) from None
    return data, lines


class _DuplicateKey(Exception):
    def __init__(self, path: LinePath, key: str, first: int, again: int) -> None:
        super().__init__(key)
        self.path, self.key, self.first, self.again = path, key, first, again


def _index_lines(node: yaml.Node, path: LinePath, lines: dict[LinePath, int], visited: set[int]) -> None:
    # An alias makes the node graph shared or even cyclic ("a: &a [*a]"), so visit each node once.
    if id(node) in visited:
        return
    visited.add(id(node))
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                # PyYAML keeps the last value silently; a repeated key is almost always an editing mistake.
                raise _DuplicateKey(path, key, seen[key], line)
            seen[key] = line
            lines[(*path, key)] = key_node.start_mark.line + 1
            _index_lines(value_node, (*path, key), lines, visited)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, (*path, index), lines, visited)


def _first_error(
    exc: pydantic.ValidationError, data: dict[str, Any], lines: dict[LinePath, int], source: str
) -> ConfigError:
    """Turn the first pydantic error into a located, human-readable ConfigError."""
    errors = exc.errors(include_url=False)
    # An unknown key usually explains the "missing" error next to it, so report it first.
    errors.sort(key=lambda item: item["type"] != "extra_forbidden")
    error = errors[0]
    location = _data_path(error["loc"], data)
    line = _nearest_line(location, lines)
    key_path = format_key_path(location)
    message = _describe(error, location, data)
    return ConfigError(message, source=source, line=line, key_path=key_path or None)


def _data_path(loc: tuple[str | int, ...], data: Any) -> LinePath:
    """Drop pydantic's union tags (such as 'maildir') that are not keys in the data."""
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            node = node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            path.append(part)
        elif isinstance(node, dict) and isinstance(part, str) and not _is_union_tag(part):
            path.append(part)
            node = None
        # else: a discriminator or model tag; skip it.
    return tuple(path)


def _is_union_tag(part: str) -> bool:
    return part in {"maildir", "smtp", "lmtp", "command"} or "[" in part or part.startswith("function-")


def _nearest_line(path: LinePath, lines: dict[LinePath, int]) -> int | None:
    for length in range(len(path), -1, -1):
        if path[:length] in lines:
            return lines[path[:length]]
    return None


def format_key_path(path: LinePath) -> str:
    """Format a key path as ``targets[0].auth.username``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not part.isprintable():
            # A key with a line break or control character would split the one-line error.
            text += f"[{part!r}]"
        else:
            text += f".{part}" if text else part
    return text


def _describe(error: Any, path: LinePath, data: Any) -> str:
    kind = error["type"]
    raw = error.get("input")
    if kind == "extra_forbidden":
        return _unknown_key_message(path)
    if kind == "missing":
        return f"required key {path[-1]!r} is missing" if path else "a required key is missing"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in {"int_parsing", "int_type", "bool_parsing", "bool_type", "string_type", "literal_error",
                "enum", "greater_than_equal", "less_than_equal", "too_short", "list_type", "tuple_type",
                "dict_type", "model_type", "union_tag_invalid", "union_tag_not_found", "model_attributes_type",
                "float_parsing", "string_too_short", "int_from_float"}:
        # A mistyped password (a YAML number, say) must not reach the error text.
        shown = "***" if path and path[-1] == "password" else _show(raw)
        return f"invalid value {shown}: {message[0].lower()}{message[1:]}"
    return message


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _unknown_key_message(path: LinePath) -> str:
    key = str(path[-1]) if path else "?"
    known = _known_keys(path[:-1])
    suggestion = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {suggestion[0]!r}?" if suggestion else ""
    listing = f". Known keys here: {', '.join(sorted(known))}." if known and not suggestion else ""
    return f"unknown key {key!r}{hint}{listing}".rstrip()


def _known_keys(parent: LinePath) -> list[str]:
    """Return the field names allowed at ``parent`` by walking the model classes."""
    model: type[BaseModel] | None = Config
    for part in parent:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _model_of(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _model_of(annotation: Any) -> type[BaseModel] | None:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def config_warnings(config: Config) -> list[str]:
    """Return warnings about a valid config that is risky or surprising."""
    warnings = []
    for index, target in enumerate(config.targets):
        where = f"targets[{index}] ({target.name})"
        if target.auth is not None and target.auth.password is not None:
            warnings.append(
                f"{where}.auth.password: the password is inline in the config file; "
                "prefer 'password_file' (with systemd LoadCredential) or 'password_env'"
            )
        if str(target.method) == "atrn" and not target.domains:
            warnings.append(
                f"{where}.domains is empty, so the ODMR receiver accepts recipients in any domain; "
                "list your domains to accept only those"
            )
        if not target.tls_verify:
            warnings.append(f"{where}.tls_verify is false, so the server certificate is not checked")
    return warnings
