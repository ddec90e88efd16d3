"""SDXL, SD3 and Flux (tiny real pipelines built offline): family detection, per-family options, overrides of the
denoiser and of each text encoder, LoRA on the Flux transformer, jobs, efficiency and the evaluation."""

import io
import json

import numpy as np
import pytest
import torch
from helpers.models import save_untrained_judge
from PIL import Image
from safetensors.torch import save_file

from dataigm import iter_samples
from dataigm.validate import validate_root
from generation.config import JobConfig
from generation.families import check_family, pipeline_class
from generation.mapper import call_arguments, sampling_of
from generation.pipeline import dtype_name, load_pipeline
from generation.probe import MAX_BATCH, MEMORY_SHARE, batch_from_peaks
from generation.runner import run_job
from generation.spec import ModelSpec
from generation.weights import transformer_state_for

FAMILIES = ("sdxl", "sd3", "flux")
CLASSES = {"sdxl": "StableDiffusionXLPipeline", "sd3": "StableDiffusion3Pipeline", "flux": "FluxPipeline"}
SCHEDULERS = {"sdxl": "EulerDiscreteScheduler", "sd3": "FlowMatchEulerDiscreteScheduler"}
SCHEDULERS["flux"] = SCHEDULERS["sd3"]
SMALL = dict(concepts=["church"], kinds=["forget"], max_prompts=2, steps=2, height=32, width=32, progress=False)


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict:
    from generation.tiny import save_tiny_family

    root = tmp_path_factory.mktemp("families")
    return {family: save_tiny_family(root / family, family) for family in FAMILIES}


def render(model, prompts=("a church", "a red car"), seeds=(1, 2)) -> np.ndarray:
    """Images of ``prompts`` with one generator per image, the family's own guidance where it has one."""
    guidance = 3.5 if model.family.distilled_guidance else 5.0
    generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    out = model.pipe(**call_arguments(model, list(prompts), generators, (2, guidance, 32, 32, None)))
    return np.asarray(out.images)


def pixels(root) -> dict:
    return {s.key: np.asarray(Image.open(io.BytesIO(s.image)), dtype=np.int16) for s in iter_samples(root)}


def _perturbed(module, only: str, prefix: str = "") -> dict:
    torch.manual_seed(1)
    return {prefix + k: v + 0.3 * torch.randn_like(v) for k, v in module.state_dict().items() if only in k}


def test_family_is_read_from_the_pipeline_class_or_named(family_dirs, tiny_pipeline_dir):
    for family, folder in family_dirs.items():
        assert pipeline_class(str(folder)) == CLASSES[family]
        assert check_family(ModelSpec(base=str(folder))).name == family
    assert check_family(ModelSpec(base=str(tiny_pipeline_dir))).name == "sd"
    assert check_family(ModelSpec(base="org/not-cached")) is None  # decided when it loads
    with pytest.raises(ValueError, match=r"family 'sdxl' does not match its pipeline FluxPipeline \(family 'flux'\)"):
        check_family(ModelSpec(base=str(family_dirs["flux"]), family="sdxl"))
    with pytest.raises(ValueError, match="unknown family 'kandinsky'; valid: sd, sdxl, sd3, flux"):
        ModelSpec(base="x", family="kandinsky")
    # keys of other families stay out of the recorded spec while unset (jobs recorded before keep their identity)
    assert "transformer" not in ModelSpec(base="x").to_dict()
    assert ModelSpec(base="x", transformer="t.safetensors").to_dict()["transformer"] == "t.safetensors"
    assert ModelSpec.from_dict(ModelSpec(base="x", cpu_offload=True).to_dict()).cpu_offload is True


@pytest.mark.parametrize(
    ("family", "model", "job", "message"),
    [
        ("flux", {"negative_prompt": "blurry"}, {}, r"\(flux\): has no negative prompt .* its spec gives 'blurry'"),
        ("flux", {}, {"negative_prompt": "blurry"}, r"the job gives 'blurry'; remove it, or set negative_prompt: ''"),
        ("flux", {"unet": "W"}, {}, r"\(flux\): has no unet; its denoiser is the transformer: give the weights as"),
        ("sdxl", {"transformer": "W"}, {}, r"\(sdxl\): has no transformer; its denoiser is the unet"),
        ("sdxl", {"text_encoder_3": "W"}, {}, r"has no text_encoder_3; its text encoders are text_encoder, text_enc"),
        ("sd3", {"scheduler": "ddim"}, {}, r"\(sd3\): scheduler 'ddim' .* samples with flow matching"),
        ("sd3", {}, {"scheduler": "euler"}, r"scheduler 'euler' \(from its spec or the job's scheduler\)"),
    ],
)
def test_an_option_the_family_lacks_is_an_error_before_anything_is_written(
    family_dirs, tmp_path, family, model, job, message
):
    weights = tmp_path / "w.safetensors"
    save_file({"x": torch.zeros(1)}, weights)
    spec = {"base": str(family_dirs[family])} | {k: str(weights) if v == "W" else v for k, v in model.items()}
    root = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        run_job(JobConfig(out=str(root), models=[spec], **SMALL | job))
    assert not root.exists()


def test_the_command_line_names_the_flux_option_in_one_line(family_dirs, tmp_path, capsys):
    from dataigm.cli import main

    root = tmp_path / "out"
    argv = ["generate", "--out", str(root), "--models", f"[{family_dirs['flux']}]", "--concepts", "[church]"]
    assert main([*argv, "--negative-prompt", "blurry", "--no-progress"]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "has no negative prompt" in error and "'blurry'" in error
    assert not root.exists()


@pytest.mark.parametrize("family", FAMILIES)
def test_family_job_is_valid_with_shared_seeds_and_batch_free_images(family_dirs, tmp_path, family):
    base = str(family_dirs[family])
    two = run_job(
        JobConfig(out=str(tmp_path / "two"), models=[base, {"base": base, "name": "copy"}], batch_size=2, **SMALL)
    )
    one = run_job(JobConfig(out=str(tmp_path / "one"), models=[base], batch_size=1, **SMALL))
    assert two.complete and one.complete and two.images == 4
    assert validate_root(tmp_path / "two") == []
    records = {s.key: s.record for s in iter_samples(tmp_path / "two")}
    by_model = {m: {r["prompt_id"]: (k, r) for k, r in records.items() if r["model"] == m} for m in ("copy",)}
    for record in records.values():
        assert record["scheduler"] == SCHEDULERS[family] and (record["height"], record["width"]) == (32, 32)
        # Flux takes its distilled guidance (the pipeline's default 3.5), never the job's CFG scale 7.5
        assert record["guidance"] == (3.5 if family == "flux" else 7.5) and record["image_flag"] is None
    images, single = pixels(tmp_path / "two"), pixels(tmp_path / "one")
    originals = [k for k, r in records.items() if r["model"] != "copy"]
    assert len(originals) == 2 and single.keys() == set(originals)
    for key in originals:
        copy_key, copy_record = by_model["copy"][records[key]["prompt_id"]]
        assert copy_record["seed"] == records[key]["seed"]  # every model of a job sees the same seeds
        assert np.abs(images[copy_key] - images[key]).max() <= 1
        assert np.abs(single[key] - images[key]).max() <= 1  # batch of 1 vs batch of 2: float noise only
    first, second = (images[k] for k in originals)
    assert np.abs(first - second).mean() > 1  # two prompts and seeds: two images


def test_lora_on_the_flux_transformer_changes_every_image_and_scale_zero_restores(family_dirs, tmp_path):
    from diffusers import FluxPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    base = str(family_dirs["flux"])
    pipe = load_pipeline(ModelSpec(base=base)).pipe
    torch.manual_seed(2)
    pipe.transformer.add_adapter(
        LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v"], init_lora_weights=False)
    )
    FluxPipeline.save_lora_weights(
        tmp_path / "lora", transformer_lora_layers=get_peft_model_state_dict(pipe.transformer)
    )
    lora = str(tmp_path / "lora")
    models = [
        base,
        {"base": base, "name": "lora", "lora": lora},
        {"base": base, "name": "off", "lora": lora, "lora_scale": 0.0},
    ]
    assert run_job(JobConfig(out=str(tmp_path / "r"), models=models, **SMALL)).complete
    images = pixels(tmp_path / "r")
    by = {(s.record["model"], s.record["prompt_id"]): images[s.key] for s in iter_samples(tmp_path / "r")}
    prompts = {p for _, p in by}
    assert len(prompts) == 2
    for prompt in prompts:
        original = by[("ORG-flux", prompt)]
        assert np.abs(by[("lora", prompt)] - original).max() > 2
        assert np.array_equal(by[("off", prompt)], original)  # scale 0 switches the adapter off


def test_transformer_and_each_text_encoder_can_be_replaced(family_dirs, tmp_path):
    flux, sd3, sdxl = (str(family_dirs[f]) for f in ("flux", "sd3", "sdxl"))
    original = {f: render(load_pipeline(ModelSpec(base=str(d)))) for f, d in family_dirs.items()}
    loaded = load_pipeline(ModelSpec(base=flux))
    # a partial transformer state dict (attention only) with the "transformer." prefix of pipeline state dicts
    state = _perturbed(loaded.pipe.transformer, "attn.to_", prefix="transformer.")
    save_file(state, tmp_path / "flux-attn.safetensors")
    model = load_pipeline(ModelSpec(base=flux, transformer=str(tmp_path / "flux-attn.safetensors")))
    replaced = model.pipe.transformer.state_dict()
    assert all(torch.equal(replaced[k.removeprefix("transformer.")], v) for k, v in state.items())
    changes = {"flux transformer": np.abs(render(model) - original["flux"]).max()}
    # the second SDXL encoder (CLIP with projection) in the published "text_model." layout
    te2 = _perturbed(load_pipeline(ModelSpec(base=sdxl)).pipe.text_encoder_2, "encoder.layers")
    save_file(te2, tmp_path / "te2.safetensors")
    model = load_pipeline(ModelSpec(base=sdxl, text_encoder_2=str(tmp_path / "te2.safetensors")))
    changes["sdxl text_encoder_2"] = np.abs(render(model) - original["sdxl"]).max()
    # the T5 encoder of SD3 as a file, and its transformer as a folder of another model
    t5 = _perturbed(load_pipeline(ModelSpec(base=sd3)).pipe.text_encoder_3, "block.")
    save_file(t5, tmp_path / "t5.safetensors")
    model = load_pipeline(ModelSpec(base=sd3, text_encoder_3=str(tmp_path / "t5.safetensors")))
    changes["sd3 text_encoder_3"] = np.abs(render(model) - original["sd3"]).max()
    from generation.tiny import save_tiny_family

    other = save_tiny_family(tmp_path / "other-sd3", "sd3", seed=5)
    model = load_pipeline(ModelSpec(base=sd3, transformer=str(other / "transformer")))
    changes["sd3 transformer folder"] = np.abs(render(model) - original["sd3"]).max()
    assert all(change > 0.01 for change in changes.values()), changes
    with pytest.raises(ValueError, match="Original-layout flux transformer weights could not be converted"):
        transformer_state_for(loaded.pipe.transformer, {"double_blocks.0.img_attn.qkv.weight": torch.zeros(1)}, "flux")
    with pytest.raises(ValueError, match="Transformer weights fit no known layout: keys such as \\['input_blocks"):
        transformer_state_for(loaded.pipe.transformer, {"input_blocks.0.weight": torch.zeros(1)}, "flux")


def test_an_original_layout_sd3_checkpoint_loads_to_the_same_weights(family_dirs, tmp_path):
    from helpers.sd3_layout import to_original_sd3

    sd3 = str(family_dirs["sd3"])
    transformer = load_pipeline(ModelSpec(base=sd3)).pipe.transformer
    torch.manual_seed(3)
    changed = {k: v + 0.1 * torch.randn_like(v) for k, v in transformer.state_dict().items()}
    original = to_original_sd3(changed, transformer.config.num_layers)
    assert any(k.startswith("model.diffusion_model.joint_blocks.0.x_block.attn.qkv") for k in original)
    save_file(original, tmp_path / "sd3-original.safetensors")
    loaded = load_pipeline(ModelSpec(base=sd3, transformer=str(tmp_path / "sd3-original.safetensors")))
    for key, value in loaded.pipe.transformer.state_dict().items():
        assert torch.equal(value, changed[key]), key


def test_efficiency_counts_the_transformer_and_text_encoders(family_dirs, tmp_path):
    from detectors.evaluation.efficiency import model_efficiency

    flux = str(family_dirs["flux"])
    pipe = load_pipeline(ModelSpec(base=flux)).pipe
    name, tensor = next((k, v) for k, v in pipe.transformer.state_dict().items() if "to_q.weight" in k)
    changed = tensor.clone()
    changed[0, :3] += 1.0  # exactly 3 elements
    save_file({name: changed}, tmp_path / "t.safetensors")
    spec = ModelSpec(base=flux, name="u", transformer=str(tmp_path / "t.safetensors"))
    report = model_efficiency(spec, ModelSpec(base=flux))
    parts = ("transformer", "text_encoder", "text_encoder_2")
    total = sum(t.numel() for p in parts for t in getattr(pipe, p).state_dict().values())
    assert report["parts"] == list(parts) and (report["changed"], report["total"]) == (3, total)
    assert list(report["by_module"]) == [f"transformer.{name.split('.')[0]}"]
    assert report["checkpoint_bytes"] == (tmp_path / "t.safetensors").stat().st_size
    with pytest.raises(ValueError, match="are of different families"):
        model_efficiency(ModelSpec(base=str(family_dirs["sd3"]), name="s"), ModelSpec(base=flux))


def test_dtype_offload_and_tiling_options(family_dirs, caplog):
    from generation.families import FAMILIES as KNOWN

    assert {f: dtype_name(ModelSpec(base="x"), KNOWN[f]) for f in KNOWN} == {
        "sd": "fp16", "sdxl": "fp16", "sd3": "bf16", "flux": "bf16"
    }  # fmt: skip
    assert dtype_name(ModelSpec(base="x", dtype="fp32"), KNOWN["flux"]) == "fp32"
    base = str(family_dirs["flux"])
    plain = load_pipeline(ModelSpec(base=base))
    tiled = load_pipeline(ModelSpec(base=base, vae_tiling=True, cpu_offload=True))
    assert tiled.pipe.vae.use_tiling and not plain.pipe.vae.use_tiling
    assert "cpu_offload applies on CUDA only" in caplog.text  # said, not silently dropped
    # a 32 px image is one tile: the same pixels
    assert np.abs(render(tiled) - render(plain)).max() < 1e-5
    with pytest.raises(ValueError, match="cpu_offload must be true or false, got 'yes'"):
        ModelSpec(base=base, cpu_offload="yes")


def test_flux_takes_its_own_guidance_not_the_cfg_scales(family_dirs, tmp_path):
    from dataigm.prompts import PromptRecord
    from generation.job import WorkItem

    cfg = JobConfig(out=str(tmp_path / "r"), models=["x"], concepts=["church"], guidance=9.0, negative_prompt="blur")
    plain = WorkItem(PromptRecord("p0", "church", "forget", "a church"), 0, 1, "train")
    own = WorkItem(PromptRecord("p1", "church", "forget", "a church", guidance=4.0), 0, 1, "train")
    flux, sdxl = (load_pipeline(ModelSpec(base=str(family_dirs[f]))) for f in ("flux", "sdxl"))
    assert sampling_of(plain, sdxl, cfg)[1:] == (9.0, None, None, "blur") and sampling_of(own, sdxl, cfg)[1] == 4.0
    with pytest.raises(ValueError, match="has no negative prompt"):
        sampling_of(plain, flux, cfg)
    cfg.negative_prompt = None
    assert sampling_of(plain, flux, cfg)[1] == sampling_of(own, flux, cfg)[1] == 3.5  # the pipeline's default
    flux.spec = ModelSpec(base="x", guidance=1.5)
    assert sampling_of(own, flux, cfg)[1] == 1.5
    # the guidance really is an input of the distilled transformer
    seeded = lambda: [torch.Generator("cpu").manual_seed(1)]  # noqa: E731 (the same noise for both)
    low, high = (
        flux.pipe(**call_arguments(flux, ["a church"], seeded(), (2, g, 32, 32, None))).images for g in (1.0, 8.0)
    )
    assert np.abs(np.asarray(low) - np.asarray(high)).max() > 0.01


def test_batch_size_from_the_measured_peaks():
    gib = 2**30
    # 1 GiB for any call (text encoders, VAE) plus 2 GiB per image, 40 GiB free: (0.8 * 40 - 1) // 2 = 15
    assert batch_from_peaks(3 * gib, 5 * gib, 40 * gib) == int((MEMORY_SHARE * 40 - 1) // 2)
    # with CPU offload the first call also moves a 19 GiB part in (20 GiB for any call): fewer images fit, never 0
    assert batch_from_peaks(22 * gib, 24 * gib, 40 * gib) == int((MEMORY_SHARE * 40 - 20) // 2)
    assert batch_from_peaks(50 * gib, 52 * gib, 40 * gib) == 1
    assert batch_from_peaks(gib, gib, 1000 * gib) == MAX_BATCH  # no measurable growth: the cap


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_family_generate_validate_evaluate(family_dirs, tiny_clip, tmp_path, family):
    from dataigm.sampling import SamplingConfig
    from detectors.evaluation.config import EvalConfig
    from detectors.evaluation.flow import run_evaluation

    base = str(family_dirs[family])
    loaded = load_pipeline(ModelSpec(base=base))
    denoiser = loaded.family.denoiser
    state = _perturbed(getattr(loaded.pipe, denoiser), "to_k")
    save_file(state, tmp_path / "u.safetensors")
    judge = save_untrained_judge(tmp_path / "judge")
    cfg = EvalConfig(
        out=str(tmp_path / "eval"), concepts=["church"], judge=f"local-dir:{judge}", kinds=["forget", "remove", "replace"],
        models=[base, {"base": base, "name": "u", "method": "ESD", denoiser: str(tmp_path / "u.safetensors")}],
        max_prompts=2, generation=SamplingConfig(steps=2, height=32, width=32), clip_model=str(tiny_clip),
        fid_feature="resnet10t", fid_pretrained=False, lpips_random_backbone=True, person_detector=None, progress=False,
    )  # fmt: skip
    report = json.loads(run_evaluation(cfg)["json"].read_text())
    assert validate_root(tmp_path / "eval" / "images") == []
    unlearned = report["concepts"]["church"]["u"]
    assert unlearned["forgetting"]["overall"]["n"] == 2
    assert unlearned["lpips"]["paired"]["n"] == 2 and unlearned["lpips"]["paired"]["value"] > 0
    assert unlearned["csdr"]["paired"]["pairs"] == 2  # scored by the evaluation's CLIP, not the generator's encoders
    efficiency = report["efficiency"]["u"]
    assert efficiency["parts"][0] == denoiser and efficiency["changed"] == sum(v.numel() for v in state.values())


def test_every_part_a_spec_can_replace_is_hashed_into_cache_keys_and_shown_on_cards(tmp_path):
    from dataigm.manifest import MODEL_WEIGHT_KEYS
    from detectors.evaluation.cache import Digests, spec_content
    from generation.pipeline import PARTS
    from generation.spec import load_model_spec

    assert set(MODEL_WEIGHT_KEYS) == {"base", "pipeline", "lora", *PARTS}
    for part in ("transformer", "text_encoder_2", "text_encoder_3"):
        weights = tmp_path / f"{part}.safetensors"
        weights.write_bytes(b"one")
        spec = load_model_spec({"base": "some/flux", "name": "m", "family": "flux", part: str(weights)})
        before = spec_content(spec, Digests())
        weights.write_bytes(b"two")  # the same path, other weights: the cached result must not be reused
        after = spec_content(spec, Digests())
        assert before["files"][part] != after["files"][part], part


def test_an_unset_dtype_is_the_family_dtype_in_the_job_identity(family_dirs, tiny_pipeline_dir):
    from generation.config import JobConfig
    from generation.job import collect_prompts, job_id

    def identity(models):
        cfg = JobConfig(out="unused", models=models, concepts=["church"], kinds=["forget"], max_prompts=2, steps=2)
        return job_id(cfg, collect_prompts(cfg, cfg.registry()))

    for family, default, other in (("sd", "fp16", "bf16"), ("flux", "bf16", "fp16")):
        base = str(tiny_pipeline_dir if family == "sd" else family_dirs[family])
        unset = identity([{"base": base, "name": "m"}])
        assert unset == identity([{"base": base, "name": "m", "dtype": default}]), family
        assert unset != identity([{"base": base, "name": "m", "dtype": other}]), family
    # the identity a version before model families gave this job (its specs recorded dtype: fp16): re-running
    # such a job after upgrading finds its shards (changes when the built-in church prompts change)
    assert identity([{"base": "toy", "name": "org"}]) == "generate-83c9bf0ea6e50d8b"


def test_an_sd3_folder_saved_without_t5_loads_and_renders(family_dirs, tmp_path):
    from diffusers import StableDiffusion3Pipeline

    full = StableDiffusion3Pipeline.from_pretrained(family_dirs["sd3"], text_encoder_3=None, tokenizer_3=None)
    full.save_pretrained(tmp_path / "sd3-no-t5")  # diffusers' documented way to drop T5-XXL
    index = json.loads((tmp_path / "sd3-no-t5" / "model_index.json").read_text())
    assert index["text_encoder_3"] == [None, None]
    model = load_pipeline(ModelSpec(base=str(tmp_path / "sd3-no-t5")))
    assert model.pipe.text_encoder_3 is None and model.family.name == "sd3"
    images = render(model)
    assert images.shape == (2, 32, 32, 3) and np.isfinite(images).all()
    # the prompt reaches the image through the CLIP encoders alone
    assert np.abs(render(model, prompts=("a church", "a church")) - images).max() > 1e-3


def test_vae_tiling_with_a_tile_size_tiles_at_native_resolution(family_dirs):
    base = str(family_dirs["sdxl"])
    plain = render(load_pipeline(ModelSpec(base=base)))
    default = load_pipeline(ModelSpec(base=base, vae_tiling=True))
    # diffusers tiles only images larger than the VAE's sample_size: at native size `true` changes nothing
    assert np.abs(render(default) - plain).max() < 1e-5
    small = load_pipeline(ModelSpec(base=base, vae_tiling=16))
    vae = small.pipe.vae
    assert vae.tile_sample_min_size == 16 and vae.tile_latent_min_size == 16 // small.pipe.vae_scale_factor
    assert np.abs(render(small) - plain).max() > 1e-3  # 32 px decoded as 16 px tiles
    for bad in (12, 0, -8, "512"):
        with pytest.raises(ValueError, match="vae_tiling must be true, false or a tile side in pixels"):
            ModelSpec(base=base, vae_tiling=bad)
