"""YAML for files anyone in the deploy group can write: brr.yaml, release.yaml, build.yaml.

PyYAML's safe loader builds no objects of its own choosing, but two things still pass:
- Duplicate keys: the last one silently wins, so a second `web:` further down (or a
  hidden one in a long file) replaces the first unseen. Refused, naming the key and both
  lines. A key that comes from a merge (`<<: *defaults`) is meant to be overridden by
  the mapping's own keys, and still may be.
- Alias bombs: nine anchors of nine aliases each make a few hundred bytes that mean
  nine^9 strings. PyYAML shares the node, so loading is cheap, but anything that walks the
  result (the digest's JSON, the validation) expands it. Aliases stay allowed (merge keys
  are common in real declarations); the document's size with every alias expanded is
  bounded (MAX_NODES) and a document past it is refused, naming its largest top-level key.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from supervisord_lite.errors import ValidationError

MAX_NODES = 100_000  # a declaration of 500 process types is a few thousand nodes
MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKey(yaml.YAMLError):
    def __init__(self, key: str, first: int, second: int) -> None:
        super().__init__(key)
        self.key, self.first, self.second = key, first, second


# libyaml's parser under the same safe constructor: the same data, about ten times faster
# than the pure-Python parser, which cost `brr-release releases` over 1 ms a release
_BASE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class StrictLoader(_BASE):  # type: ignore[valid-type,misc]
    """The safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise DuplicateKey(str(key), seen[key], line)
                seen[key] = line
            except TypeError:  # an unhashable key: SafeConstructor refuses it itself
                continue
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def expanded_size(node: Node, memo: dict[int, int]) -> int:
    """How many nodes node stands for with every alias expanded (memo: shared nodes)."""
    known = memo.get(id(node))
    if known is not None:
        return known
    memo[id(node)] = MAX_NODES + 1  # a node that contains itself expands forever
    size = 1
    if isinstance(node, SequenceNode):
        size += sum(expanded_size(item, memo) for item in node.value)
    elif isinstance(node, MappingNode):
        size += sum(expanded_size(k, memo) + expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = min(size, MAX_NODES + 1)
    return memo[id(node)]


def largest_key(node: Node, memo: dict[int, int]) -> str:
    if not isinstance(node, MappingNode) or not node.value:
        return ""
    key, _ = max(node.value, key=lambda kv: memo.get(id(kv[1]), 0))
    return str(key.value) if isinstance(key.value, str) else ""


def load(text: str, source: str) -> Any:
    """Parse one YAML document; ValidationError (one line) for a duplicate key or a
    document whose aliases expand past MAX_NODES. Other YAML errors are raised as is."""
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        memo: dict[int, int] = {}
        try:
            too_big = expanded_size(node, memo) > MAX_NODES
        except RecursionError:
            too_big = True
        if too_big:
            raise ValidationError(
                source,
                largest_key(node, memo),
                f"expands to more than {MAX_NODES} values through aliases (an alias bomb?)",
            )
        return loader.construct_document(node)
    except DuplicateKey as exc:
        raise ValidationError(
            source, exc.key, f"given twice (lines {exc.first} and {exc.second}); keep one"
        ) from None
    finally:
        loader.dispose()
