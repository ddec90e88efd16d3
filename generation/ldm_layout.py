"""The CompVis/LDM names of a diffusers SD-style UNet's weights.

diffusers converts LDM checkpoints to its own keys but counts the blocks from the keys it is given,
so a partial checkpoint (e.g. cross-attention only) cannot be converted alone. With this map the
missing tensors are filled in from the base UNet before the conversion.

The mapping follows the LDM ``UNetModel`` structure: ``input_blocks`` hold conv_in, then per level
``layers_per_block`` (ResBlock[, SpatialTransformer]) and a downsampler; ``output_blocks`` hold per
level ``layers_per_block + 1`` blocks, the last with the upsampler.
"""

from __future__ import annotations

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "time_emb_proj": "emb_layers.1",
          "norm2": "out_layers.0", "conv2": "out_layers.3", "conv_shortcut": "skip_connection"}  # fmt: skip
TOP = {"conv_in": "input_blocks.0.0", "time_embedding.linear_1": "time_embed.0",
       "time_embedding.linear_2": "time_embed.2", "conv_norm_out": "out.0", "conv_out": "out.2"}  # fmt: skip


def _resnet(rest: str) -> str:
    name, _, tail = rest.partition(".")
    return f"{RESNET[name]}.{tail}"


def ldm_name(key: str, config: dict) -> str:
    """The LDM name (without the ``model.diffusion_model.`` prefix) of a diffusers UNet key."""
    per_level = config["layers_per_block"]
    up_has_attention = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    parts = key.split(".")
    top = next((d for d in TOP if key.startswith(d + ".")), None)
    if top is not None:
        return TOP[top] + key[len(top) :]
    if parts[0] == "down_blocks":
        b, kind, i, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        if kind == "downsamplers":
            return f"input_blocks.{(b + 1) * (per_level + 1)}.0.op.{'.'.join(parts[5:])}"
        block = 1 + b * (per_level + 1) + i
        return f"input_blocks.{block}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{block}.1.{rest}"
    if parts[0] == "mid_block":
        kind, i, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        return f"middle_block.{2 * i}.{_resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
    if parts[0] == "up_blocks":
        b, kind, i, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        if kind == "upsamplers":
            slot = 2 if up_has_attention[b] else 1
            return f"output_blocks.{b * (per_level + 1) + per_level}.{slot}.{rest}"
        block = b * (per_level + 1) + i
        return f"output_blocks.{block}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{block}.1.{rest}"
    raise KeyError(key)


def to_ldm(state: dict, config: dict, prefix: str = "model.diffusion_model.") -> dict:
    """``state`` (diffusers keys) renamed to the LDM layout; raises ``KeyError`` for a key it cannot name."""
    return {prefix + ldm_name(key, config): value for key, value in state.items()}
