"""The published architectures of SD-1.4, SDXL, SD3-medium and FLUX.1-dev as data, for full-size dry runs.

Only the architecture fields of each component's ``config.json`` on the Hub (the values are the published ones;
fields left out take the class default, which is the published value too). Each entry names the Hub repository and
file it comes from. Tokenizers are not here: their vocabularies cannot be read offline (``benchmarks/fullsize.py``
says what stands in for them).

Where each number was read:

* ``CompVis/stable-diffusion-v1-4``: ``unet/config.json``, ``vae/config.json``, ``text_encoder/config.json``
  (CLIP ViT-L/14, ``openai/clip-vit-large-patch14``), ``scheduler/scheduler_config.json``. The same UNet and VAE
  numbers are the CompVis ``v1-inference.yaml`` ones (``model_channels`` 320, ``channel_mult`` 1, 2, 4, 4,
  ``num_heads`` 8, ``context_dim`` 768), which diffusers' ``create_unet_diffusers_config_from_ldm``
  (``diffusers/loaders/single_file_utils.py``) turns into these fields.
* ``stabilityai/stable-diffusion-xl-base-1.0``: ``unet/config.json`` (``transformer_layers_per_block`` 1, 2, 10,
  ``attention_head_dim`` 5, 10, 20, ``cross_attention_dim`` 2048, ``addition_time_embed_dim`` 256,
  ``projection_class_embeddings_input_dim`` 2816 = 1280 pooled + 6 x 256; Stability-AI/generative-models
  ``configs/inference/sd_xl_base.yaml`` has the same ``adm_in_channels`` 2816 and ``context_dim`` 2048),
  ``vae/config.json`` (``scaling_factor`` 0.13025), ``text_encoder/config.json`` (CLIP ViT-L),
  ``text_encoder_2/config.json`` (OpenCLIP ViT-bigG/14 text tower: 32 layers, width 1280, 20 heads, gelu,
  projection 1280), ``scheduler/scheduler_config.json``.
* ``stabilityai/stable-diffusion-3-medium-diffusers``: ``transformer/config.json`` (24 layers of 24 heads x 64,
  ``caption_projection_dim`` 1536, ``pos_embed_max_size`` 192, ``pooled_projection_dim`` 2048),
  ``vae/config.json`` (16 latent channels, ``scaling_factor`` 1.5305, ``shift_factor`` 0.0609, no quant convs),
  ``text_encoder`` and ``text_encoder_2`` (CLIP-L and bigG, both with projection), ``text_encoder_3/config.json``
  (T5 v1.1 XXL encoder: ``d_model`` 4096, ``d_ff`` 10240, 64 heads x 64, 24 layers, gated-gelu, vocabulary 32128),
  ``scheduler/scheduler_config.json`` (flow matching, ``shift`` 3.0).
* ``black-forest-labs/FLUX.1-dev``: ``transformer/config.json`` (19 double and 38 single blocks of 24 heads x 128,
  ``joint_attention_dim`` 4096, ``pooled_projection_dim`` 768, ``guidance_embeds`` true, ``axes_dims_rope``
  16, 56, 56; diffusers' ``FluxTransformer2DModel`` defaults are these numbers but for ``guidance_embeds``),
  ``vae/config.json`` (``scaling_factor`` 0.3611, ``shift_factor`` 0.1159), ``text_encoder`` (CLIP-L),
  ``text_encoder_2`` (the same T5-XXL encoder as SD3).

``tests/test_fullsize_configs.py`` checks each denoiser and text encoder against its published parameter count
(built on the ``meta`` device: no memory), which is what shows these are the real architectures.
"""

from __future__ import annotations

# ---------------------------------------------------------------- shared parts

# openai/clip-vit-large-patch14 text tower (SD-1.4 text_encoder, SDXL/SD3/Flux text_encoder)
CLIP_L = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=768,
)  # fmt: skip
# OpenCLIP ViT-bigG/14 text tower (SDXL text_encoder_2, SD3 text_encoder_2)
CLIP_BIGG = dict(
    vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
    max_position_embeddings=77, hidden_act="gelu", layer_norm_eps=1e-5, projection_dim=1280,
)  # fmt: skip
# google/t5-v1_1-xxl encoder (SD3 text_encoder_3, Flux text_encoder_2)
T5_XXL = dict(
    vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, feed_forward_proj="gated-gelu",
    dense_act_fn="gelu_new", is_gated_act=True, layer_norm_epsilon=1e-6, tie_word_embeddings=False,
)  # fmt: skip
# The KL VAE of SD-1.x and SDXL (4 latent channels); SD3 and Flux add 16 latent channels and a shift.
VAE_KL4 = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=32,
)  # fmt: skip
VAE_KL16 = dict(VAE_KL4, latent_channels=16, use_quant_conv=False, use_post_quant_conv=False)

# The scaled-linear DDPM schedule of SD-1.x and SDXL.
_SCALED_LINEAR = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", num_train_timesteps=1000)

# ---------------------------------------------------------------- the models

MODELS: dict[str, dict] = {
    "sd14": {
        "repo": "CompVis/stable-diffusion-v1-4",
        "pipeline": "StableDiffusionPipeline",
        "resolution": 512,
        "unet": dict(
            sample_size=64,
            in_channels=4,
            out_channels=4,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=768,
            attention_head_dim=8,
            norm_num_groups=32,
        ),  # fmt: skip
        "vae": dict(VAE_KL4, sample_size=512, scaling_factor=0.18215),
        "text_encoder": ("CLIPTextModel", CLIP_L),
        "scheduler": (
            "PNDMScheduler",
            dict(_SCALED_LINEAR, skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1, clip_sample=False),
        ),
    },
    "sdxl": {
        "repo": "stabilityai/stable-diffusion-xl-base-1.0",
        "pipeline": "StableDiffusionXLPipeline",
        "resolution": 1024,
        "unet": dict(
            sample_size=128,
            in_channels=4,
            out_channels=4,
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20),
            use_linear_projection=True,
            cross_attention_dim=2048,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
            norm_num_groups=32,
        ),  # fmt: skip
        "vae": dict(VAE_KL4, sample_size=1024, scaling_factor=0.13025, force_upcast=True),
        "text_encoder": ("CLIPTextModel", CLIP_L),
        "text_encoder_2": ("CLIPTextModelWithProjection", CLIP_BIGG),
        "scheduler": (
            "EulerDiscreteScheduler",
            dict(_SCALED_LINEAR, steps_offset=1, timestep_spacing="leading", interpolation_type="linear"),
        ),
    },
    "sd3": {
        "repo": "stabilityai/stable-diffusion-3-medium-diffusers",
        "pipeline": "StableDiffusion3Pipeline",
        "resolution": 1024,
        "transformer": dict(
            sample_size=128,
            patch_size=2,
            in_channels=16,
            out_channels=16,
            num_layers=24,
            attention_head_dim=64,
            num_attention_heads=24,
            joint_attention_dim=4096,
            caption_projection_dim=1536,
            pooled_projection_dim=2048,
            pos_embed_max_size=192,
        ),  # fmt: skip
        "vae": dict(VAE_KL16, sample_size=1024, scaling_factor=1.5305, shift_factor=0.0609),
        "text_encoder": ("CLIPTextModelWithProjection", CLIP_L),
        "text_encoder_2": ("CLIPTextModelWithProjection", CLIP_BIGG),
        "text_encoder_3": ("T5EncoderModel", T5_XXL),
        "scheduler": ("FlowMatchEulerDiscreteScheduler", dict(num_train_timesteps=1000, shift=3.0)),
    },
    "flux": {
        "repo": "black-forest-labs/FLUX.1-dev",
        "pipeline": "FluxPipeline",
        "resolution": 1024,
        "transformer": dict(
            patch_size=1,
            in_channels=64,
            num_layers=19,
            num_single_layers=38,
            attention_head_dim=128,
            num_attention_heads=24,
            joint_attention_dim=4096,
            pooled_projection_dim=768,
            guidance_embeds=True,
            axes_dims_rope=(16, 56, 56),
        ),  # fmt: skip
        "vae": dict(VAE_KL16, sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159),
        "text_encoder": ("CLIPTextModel", CLIP_L),
        "text_encoder_2": ("T5EncoderModel", T5_XXL),
        "scheduler": (
            "FlowMatchEulerDiscreteScheduler",
            dict(
                num_train_timesteps=1000,
                shift=3.0,
                use_dynamic_shifting=True,
                base_shift=0.5,
                max_shift=1.15,
                base_image_seq_len=256,
                max_image_seq_len=4096,
            ),
        ),  # fmt: skip
    },
}

# Token ids of the stand-in byte-level CLIP tokenizer (generation.tiny.write_byte_vocabulary): start and end.
BYTE_BOS, BYTE_EOS = 512, 513
COMPONENTS = ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")


def build(model: str, component: str, device: str = "cpu", dtype=None):
    """Component ``component`` of ``model`` with random weights, created on ``device`` (``"meta"``: no memory).

    The CLIP encoders take the byte tokenizer's start and end ids (non-architectural fields).
    """
    import torch

    spec = MODELS[model][component]
    previous = torch.get_default_dtype()
    if dtype is not None:
        torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            return _construct(component, spec)
    finally:
        torch.set_default_dtype(previous)


def _construct(component: str, spec):
    import diffusers
    import transformers

    if component == "unet":
        return diffusers.UNet2DConditionModel(**spec)
    if component == "transformer":
        kind = "FluxTransformer2DModel" if "num_single_layers" in spec else "SD3Transformer2DModel"
        return getattr(diffusers, kind)(**spec)
    if component == "vae":
        return diffusers.AutoencoderKL(**spec)
    class_name, fields = spec
    if class_name == "T5EncoderModel":
        config = transformers.T5Config(**fields, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    else:
        config = transformers.CLIPTextConfig(
            **fields, bos_token_id=BYTE_BOS, eos_token_id=BYTE_EOS, pad_token_id=BYTE_EOS
        )
    return getattr(transformers, class_name)(config)


def parameters(module) -> int:
    """Number of parameters (tied weights once)."""
    return sum(p.numel() for p in {id(p): p for p in module.parameters()}.values())
