"""Tiny real models with random weights, built offline (tests, benchmarks, smoke runs): a Stable
Diffusion pipeline and a CLIP model.

It has the real classes (``UNet2DConditionModel``, ``AutoencoderKL``, ``CLIPTextModel``, a byte-level
``CLIPTokenizer`` whose vocabulary is written here) at a few channels: 64 px images in well under a
second on a CPU. ``save_pretrained`` makes it a folder that loads like any Hub pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path


def write_byte_vocabulary(folder: Path) -> tuple[Path, Path]:
    """CLIP's byte-level symbols (and their end-of-word forms) plus start/end tokens; no merges."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    symbols = [chr(c) for c in codes]
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": i + 256 for i, s in enumerate(symbols)})
    vocab.update({"<|startoftext|>": 512, "<|endoftext|>": 513})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    return folder / "vocab.json", folder / "merges.txt"


def build_tiny_pipeline(work_dir: str | Path, seed: int = 0):
    """A ``StableDiffusionPipeline`` of tiny random models (64 px output)."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    vocab, merges = write_byte_vocabulary(Path(work_dir) / "tokenizer-files")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=8,
        norm_num_groups=2,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=(4, 8),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=2,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=512,
            eos_token_id=513,
            pad_token_id=513,
            hidden_size=8,
            intermediate_size=16,
            num_attention_heads=2,
            num_hidden_layers=2,
            vocab_size=1000,
            layer_norm_eps=1e-5,
        )
    )
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )


def save_tiny_pipeline(folder: str | Path, seed: int = 0) -> Path:
    """Build the tiny pipeline and save it as a diffusers folder; returns the folder."""
    folder = Path(folder)
    build_tiny_pipeline(folder.parent / f".{folder.name}-work", seed).save_pretrained(folder)
    return folder


def save_tiny_clip(folder: str | Path, seed: int = 0) -> Path:
    """A tiny ``CLIPModel`` with its processor (byte-level tokenizer, 32 px images), saved as a folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    folder = Path(folder)
    vocab, merges = write_byte_vocabulary(folder.parent / f".{folder.name}-tokenizer")
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    text = dict(vocab_size=1000, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)
    text.update(max_position_embeddings=77, bos_token_id=512, eos_token_id=513, pad_token_id=513)
    vision = dict(
        image_size=32, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2
    )
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)).save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- other pipeline families
# Each builder follows the structure of the real model at a few channels (checked with diffusers 0.42):
# the same classes, the same wiring between text encoders and denoiser, 32 px images in well under a second.


def _clip_text_config(hidden: int = 8, projection: int | None = None):
    from transformers import CLIPTextConfig

    extra = {"projection_dim": projection} if projection is not None else {}
    return CLIPTextConfig(
        bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_size=hidden, intermediate_size=2 * hidden,
        num_attention_heads=2, num_hidden_layers=2, vocab_size=1000, layer_norm_eps=1e-5, **extra,
    )  # fmt: skip


def _clip_tokenizer(work_dir: Path):
    from transformers import CLIPTokenizer

    vocab, merges = write_byte_vocabulary(Path(work_dir) / "tokenizer-files")
    return CLIPTokenizer(str(vocab), str(merges), model_max_length=77)


def build_t5_tokenizer():
    """A ``T5TokenizerFast`` over single characters (a Unigram vocabulary built in memory, nothing read)."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -1.0)]
    pieces += [(chr(c), -2.0) for c in range(ord("!"), ord("~") + 1)]
    pieces += [("▁" + chr(c), -1.5) for c in range(ord("!"), ord("~") + 1)]
    return T5TokenizerFast(vocab=pieces, unk_token="<unk>", pad_token="<pad>", eos_token="</s>", extra_ids=0)


def _t5_encoder(d_model: int = 16, seed: int = 0):
    import torch
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=256, d_model=d_model, d_kv=8, d_ff=2 * d_model, num_layers=2, num_heads=2,
        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
    )  # fmt: skip
    return T5EncoderModel(config)


def _vae(seed: int, shift_factor: float | None = None):
    import torch
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    extra = {"shift_factor": shift_factor, "scaling_factor": 1.0} if shift_factor is not None else {}
    return AutoencoderKL(
        block_out_channels=(4, 8), in_channels=3, out_channels=3, latent_channels=4, norm_num_groups=2,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, **extra,
    )  # fmt: skip


def build_tiny_sdxl_pipeline(work_dir: str | Path, seed: int = 0):
    """A ``StableDiffusionXLPipeline``: two CLIP text encoders (the second with a projection) and a UNet with
    SDXL's size conditioning (``addition_embed_type="text_time"``); 32 px output."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(4, 8), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, norm_num_groups=2,
        cross_attention_dim=16,  # the two encoders' hidden states side by side: 8 + 8
        addition_embed_type="text_time", addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=8 + 6 * 4,  # pooled projection (8) + 6 size numbers x 4
    )  # fmt: skip
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_clip_text_config(8))
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(8, projection=8))
    tokenizer = _clip_tokenizer(work_dir)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    return StableDiffusionXLPipeline(
        vae=_vae(seed), text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=True,
    )  # fmt: skip


def build_tiny_sd3_pipeline(work_dir: str | Path, seed: int = 0):
    """A ``StableDiffusion3Pipeline``: two CLIP encoders with projections, a T5 encoder and an MMDiT
    transformer with flow matching; 32 px output."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=1, in_channels=4, out_channels=4, num_layers=1, attention_head_dim=8,
        num_attention_heads=2, caption_projection_dim=16, pos_embed_max_size=32,  # up to 64 px
        joint_attention_dim=16,  # T5 d_model; the CLIP states (8 + 8) are padded to it
        pooled_projection_dim=16,  # both CLIP projections (8 + 8)
    )  # fmt: skip
    torch.manual_seed(seed)
    text_encoder = CLIPTextModelWithProjection(_clip_text_config(8, projection=8))
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_clip_text_config(8, projection=8))
    tokenizer = _clip_tokenizer(work_dir)
    return StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=_vae(seed, 0.0),
        text_encoder=text_encoder, tokenizer=tokenizer, text_encoder_2=text_encoder_2, tokenizer_2=tokenizer,
        text_encoder_3=_t5_encoder(16, seed), tokenizer_3=build_t5_tokenizer(),
    )  # fmt: skip


def build_tiny_flux_pipeline(work_dir: str | Path, seed: int = 0):
    """A ``FluxPipeline``: CLIP (pooled) + T5 (sequence) text encoders, a guidance-distilled transformer
    (``guidance_embeds=True``) and flow matching; 32 px output."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8,  # 16 = 4 latents x 2x2
        num_attention_heads=2, joint_attention_dim=16, pooled_projection_dim=8, guidance_embeds=True,
        axes_dims_rope=(2, 2, 4),  # sums to the head dimension
    )  # fmt: skip
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_clip_text_config(8))
    return FluxPipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=_vae(seed, 0.0),
        text_encoder=text_encoder, tokenizer=_clip_tokenizer(work_dir), text_encoder_2=_t5_encoder(16, seed),
        tokenizer_2=build_t5_tokenizer(),
    )  # fmt: skip


TINY_BUILDERS = {
    "sd": build_tiny_pipeline,
    "sdxl": build_tiny_sdxl_pipeline,
    "sd3": build_tiny_sd3_pipeline,
    "flux": build_tiny_flux_pipeline,
}


def save_tiny_family(folder: str | Path, family: str, seed: int = 0) -> Path:
    """Build the tiny pipeline of ``family`` (``sd``, ``sdxl``, ``sd3``, ``flux``) and save it as a folder."""
    if family not in TINY_BUILDERS:
        raise ValueError(f"No tiny pipeline for family {family!r}; valid: {', '.join(TINY_BUILDERS)}")
    folder = Path(folder)
    TINY_BUILDERS[family](folder.parent / f".{folder.name}-work", seed).save_pretrained(folder)
    return folder
