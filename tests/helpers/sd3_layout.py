"""A diffusers SD3 transformer state dict written in the original (Stability ``joint_blocks``) layout.

The inverse of diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers`` for transformers without QK norm or
dual attention, so that tests can load an original-layout checkpoint built from a tiny model.
"""

from __future__ import annotations

TOP = {
    "pos_embed.pos_embed": "pos_embed",
    "pos_embed.proj": "x_embedder.proj",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
    "context_embedder": "context_embedder",
    "proj_out": "final_layer.linear",
}
BLOCK = {
    "attn.to_out.0": "x_block.attn.proj",
    "attn.to_add_out": "context_block.attn.proj",
    "norm1.linear": "x_block.adaLN_modulation.1",
    "norm1_context.linear": "context_block.adaLN_modulation.1",
    "ff.net.0.proj": "x_block.mlp.fc1",
    "ff.net.2": "x_block.mlp.fc2",
    "ff_context.net.0.proj": "context_block.mlp.fc1",
    "ff_context.net.2": "context_block.mlp.fc2",
}


def _swap_halves(tensor):
    """(scale, shift) <-> (shift, scale): the original AdaLayerNormContinuous order is the other one."""
    import torch

    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def to_original_sd3(state: dict, num_layers: int, prefix: str = "model.diffusion_model.") -> dict:
    """``state`` (diffusers keys of an ``SD3Transformer2DModel``) in the original layout, with ``prefix``."""
    import torch

    out = {}
    for name, tensor in state.items():
        stem, _, kind = name.rpartition(".")
        if name == "pos_embed.pos_embed":
            out["pos_embed"] = tensor
        elif stem in TOP:
            out[f"{TOP[stem]}.{kind}"] = tensor
        elif stem == "norm_out.linear":
            out[f"final_layer.adaLN_modulation.1.{kind}"] = _swap_halves(tensor)
        elif name.startswith("transformer_blocks."):
            _, index, rest = name.split(".", 2)
            rest_stem = rest.rpartition(".")[0]
            if rest_stem in BLOCK:
                value = tensor
                if rest_stem == "norm1_context.linear" and int(index) == num_layers - 1:
                    value = _swap_halves(tensor)  # the last block's context side is pre-only
                out[f"joint_blocks.{index}.{BLOCK[rest_stem]}.{kind}"] = value
        else:
            raise KeyError(name)
    for i in range(num_layers):  # q, k, v fused into one projection per side
        for side, names in (
            ("x_block", ("to_q", "to_k", "to_v")),
            ("context_block", ("add_q_proj", "add_k_proj", "add_v_proj")),
        ):
            for kind in ("weight", "bias"):
                parts = [state[f"transformer_blocks.{i}.attn.{n}.{kind}"] for n in names]
                out[f"joint_blocks.{i}.{side}.attn.qkv.{kind}"] = torch.cat(parts, dim=0)
    return {prefix + k: v for k, v in out.items()}
