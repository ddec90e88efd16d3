"""Write a diffusers UNet state dict in the original CompVis/LDM key layout (test helper).

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


def to_ldm(state: dict, config: dict, prefix: str = "model.diffusion_model.") -> dict:
    per_level = config["layers_per_block"]
    levels = len(config["block_out_channels"])
    up_has_attention = [t.startswith("CrossAttn") for t in config["up_block_types"]]
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        top = next((ldm for d, ldm in TOP.items() if key.startswith(d + ".")), None)
        if top is not None:
            new = top + key[len(next(d for d in TOP if key.startswith(d + "."))) :]
        elif parts[0] == "down_blocks":
            b, kind, i = int(parts[1]), parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            if kind == "downsamplers":
                new = f"input_blocks.{(b + 1) * (per_level + 1)}.0.op.{'.'.join(parts[5:])}"
            else:
                block = 1 + b * (per_level + 1) + i
                new = (
                    f"input_blocks.{block}.0.{_resnet(rest)}"
                    if kind == "resnets"
                    else f"input_blocks.{block}.1.{rest}"
                )
        elif parts[0] == "mid_block":
            kind, i, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            new = f"middle_block.{2 * i}.{_resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
        elif parts[0] == "up_blocks":
            b, kind, i = int(parts[1]), parts[2], int(parts[3])
            rest = ".".join(parts[4:])
            block = b * (per_level + 1) + i
            if kind == "upsamplers":
                slot = 2 if up_has_attention[b] else 1
                new = f"output_blocks.{b * (per_level + 1) + per_level}.{slot}.{rest}"
            else:
                new = (
                    f"output_blocks.{block}.0.{_resnet(rest)}"
                    if kind == "resnets"
                    else f"output_blocks.{block}.1.{rest}"
                )
        else:
            raise KeyError(f"no LDM name for {key}")
        out[prefix + new] = value
    assert levels == len(config["down_block_types"])
    return out
