"""dataigm: the DataIGM data model (taxonomy, concepts, prompts, samples, shards) and the CLI root.

``import dataigm`` stays light: no torch, diffusers or datasets at import time.
"""

from .concepts import Concept, ConceptRegistry, get_concept, load_registry
from .layout import ShardId
from .manifest import open_root, read_manifest
from .prompts import PromptRecord, build_prompts, read_prompts, write_prompts
from .reader import ShardError, iter_samples, iter_shard
from .sample import Sample
from .schema import FIELD_NAMES, SCHEMA_VERSION, SchemaError, make_key, validate_record
from .taxonomy import LEAVES, Category, parse_category
from .writer import shard_is_done, write_shard

__version__ = "0.1.0"

__all__ = [
    "FIELD_NAMES",
    "LEAVES",
    "SCHEMA_VERSION",
    "Category",
    "Concept",
    "ConceptRegistry",
    "PromptRecord",
    "Sample",
    "SchemaError",
    "ShardError",
    "ShardId",
    "build_prompts",
    "get_concept",
    "iter_samples",
    "iter_shard",
    "load_registry",
    "make_key",
    "open_root",
    "parse_category",
    "read_manifest",
    "read_prompts",
    "shard_is_done",
    "validate_record",
    "write_prompts",
    "write_shard",
]
