"""The one YAML reader for files other people write: recipes, concept, prompt, model spec and perturbation files.

``yaml.safe_load`` builds no Python objects, but an alias (``*name``) stands for the whole node its anchor
(``&name``) names: a few lines (``&a [x, x]``, ``&b [*a, *a]``, ...) stand for a structure whose size grows
exponentially with each level, and anything that walks or serialises it (a recipe step's id, a config dump)
hangs while memory grows. The reader counts, while it composes the document and before anything is built from
it, how many values the aliases stand for, and refuses the file once they stand for more than
:data:`MAX_ALIAS_VALUES` (a few shared lists, as ``yaml.safe_dump`` writes for objects used twice, stay well
under it). An alias inside the node it names (a structure containing itself) and nesting too deep to read are
refused too. Each refusal is one line naming the file and the line.
"""

from __future__ import annotations

from typing import IO, Any

import yaml

__all__ = ["MAX_ALIAS_VALUES", "YamlRefused", "load_yaml"]

MAX_ALIAS_VALUES = 10_000


class YamlRefused(ValueError):
    """A YAML file these readers do not accept: aliases that stand for too much, a self-containing structure,
    or nesting too deep to read."""


class _BoundedAliasLoader(yaml.SafeLoader):
    """``SafeLoader`` whose composer knows each node's expanded size and bounds what the aliases add."""

    def __init__(self, stream, name: str) -> None:
        super().__init__(stream)
        self.name_for_errors = name
        self.sizes: dict[int, int] = {}  # id(node) -> values it stands for, itself included (once composed)
        self.alias_values = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None:  # an unknown alias: the composer's own error
                line = event.start_mark.line + 1
                size = self.sizes.get(id(target))
                if size is None:
                    raise YamlRefused(
                        f"{self.name_for_errors}: line {line}: alias *{event.anchor} is inside the value it names "
                        "(a structure that contains itself)"
                    )
                self.alias_values += size
                if self.alias_values > MAX_ALIAS_VALUES:
                    raise YamlRefused(
                        f"{self.name_for_errors}: line {line}: the aliases (*{event.anchor} and those before it) "
                        f"stand for more than {MAX_ALIAS_VALUES} values; write the values out instead of aliasing"
                    )
            return super().compose_node(parent, index)
        node = super().compose_node(parent, index)
        if isinstance(node, yaml.SequenceNode):
            size = 1 + sum(self.sizes[id(item)] for item in node.value)
        elif isinstance(node, yaml.MappingNode):
            size = 1 + sum(self.sizes[id(key)] + self.sizes[id(value)] for key, value in node.value)
        else:
            size = 1
        self.sizes[id(node)] = size  # the nodes live as long as the loader: their ids stay theirs
        return node


def load_yaml(source: str | bytes | IO, name: str) -> Any:
    """Parse one YAML document like ``yaml.safe_load``, with the bounds of this module.

    Args:
        source: the text, or an open file.
        name: how messages name the file (e.g. its path).

    Raises:
        YamlRefused: aliases standing for more than :data:`MAX_ALIAS_VALUES` values, an alias inside the value
            it names, or nesting too deep to read (the message names ``name`` and the line).
        yaml.YAMLError: the text is not valid YAML (the callers word that error themselves).
    """
    loader = _BoundedAliasLoader(source, name)
    try:
        return loader.get_single_data()
    except RecursionError:
        raise YamlRefused(f"{name}: the YAML is nested too deeply to read") from None
    finally:
        loader.dispose()
