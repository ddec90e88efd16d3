"""Unlearned parts really change the images; every weight layout loads to the same weights."""

import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from dataigm import iter_samples
from generation.config import JobConfig
from generation.ldm_layout import to_ldm
from generation.pipeline import load_pipeline
from generation.runner import run_job
from generation.spec import ModelSpec
from generation.weights import load_state_dict, text_encoder_state_for, unet_state_for


def render(root, model) -> dict[str, bytes]:
    cfg = JobConfig(
        out=str(root),
        models=[model],
        concepts=["church"],
        kinds=["forget"],
        max_prompts=2,
        steps=2,
        height=64,
        width=64,
        progress=False,
    )
    summary = run_job(cfg)
    assert summary.complete, summary.text()
    return {s.record["prompt_id"]: s.image for s in iter_samples(root)}


@pytest.fixture(scope="module")
def original(tiny_pipeline_dir, tmp_path_factory):
    return render(tmp_path_factory.mktemp("org") / "r", str(tiny_pipeline_dir))


def _perturbed(module, only: str) -> dict:
    torch.manual_seed(1)
    return {k: v + 0.3 * torch.randn_like(v) for k, v in module.state_dict().items() if only in k}


def test_unet_override_changes_images_in_both_layouts(tiny_pipeline_dir, tmp_path, original):
    pipe = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir))).pipe
    state = _perturbed(pipe.unet, "attn2")  # a partial, ESD-x-like override of cross-attention
    save_file(state, tmp_path / "unet.safetensors")
    changed = render(
        tmp_path / "d", {"base": str(tiny_pipeline_dir), "method": "ESD", "unet": str(tmp_path / "unet.safetensors")}
    )
    assert changed.keys() == original.keys() and all(changed[k] != original[k] for k in original)

    full = {k: v + 0.01 for k, v in pipe.unet.state_dict().items()}
    torch.save({"state_dict": to_ldm(full, dict(pipe.unet.config))}, tmp_path / "compvis.ckpt")
    save_file(full, tmp_path / "diffusers.safetensors")
    ldm_state = to_ldm(full, dict(pipe.unet.config))
    partial = {
        k: v for k, v in ldm_state.items() if "attn2" in k
    }  # CompVis ESD-x checkpoints hold cross-attention only
    assert unet_state_for(pipe.unet, partial).keys() == {k for k in full if "attn2" in k}
    from_ldm = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir), unet=str(tmp_path / "compvis.ckpt"))).pipe.unet
    from_diffusers = load_pipeline(
        ModelSpec(base=str(tiny_pipeline_dir), unet=str(tmp_path / "diffusers.safetensors"))
    ).pipe.unet
    for key, value in from_diffusers.state_dict().items():
        assert torch.equal(value, from_ldm.state_dict()[key]), key
        assert torch.equal(value, full[key])


def test_text_encoder_override_changes_images(tiny_pipeline_dir, tmp_path, original):
    pipe = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir))).pipe
    state = _perturbed(pipe.text_encoder, "encoder.layers")
    assert state
    # published checkpoints use "text_model." keys (transformers 4 layout), LDM ones add "cond_stage_model.transformer."
    published = {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in state.items()}
    ldm = {f"cond_stage_model.transformer.{k}": v for k, v in published.items()}
    torch.save(ldm, tmp_path / "te.pt")
    for layout in (ldm, published, state):
        converted = text_encoder_state_for(pipe.text_encoder, layout)
        assert converted.keys() == state.keys() and all(torch.equal(converted[k], state[k]) for k in state)
    changed = render(
        tmp_path / "d",
        {"base": str(tiny_pipeline_dir), "method": "AdvUnlearn", "text_encoder": str(tmp_path / "te.pt")},
    )
    assert all(changed[k] != original[k] for k in original)


def test_lora_override_changes_images(tiny_pipeline_dir, tmp_path, original):
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    pipe = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir))).pipe
    torch.manual_seed(2)
    pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_k", "to_v"], init_lora_weights=False))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))
    StableDiffusionPipeline.save_lora_weights(tmp_path / "lora", unet_lora_layers=layers)
    changed = render(tmp_path / "d", {"base": str(tiny_pipeline_dir), "method": "SPM", "lora": str(tmp_path / "lora")})
    assert all(changed[k] != original[k] for k in original)
    weak = render(
        tmp_path / "w",
        {"base": str(tiny_pipeline_dir), "name": "weak", "lora": str(tmp_path / "lora"), "lora_scale": 0.0},
    )
    assert weak == original  # scale 0 switches the adapter off


def test_unknown_keys_name_the_expected_layouts(tiny_pipeline_dir, tmp_path):
    pipe = load_pipeline(ModelSpec(base=str(tiny_pipeline_dir))).pipe
    with pytest.raises(
        ValueError, match=r"UNet weights fit no known layout: keys such as \['encoder.0.weight'\].*CompVis/LDM"
    ):
        unet_state_for(pipe.unet, {"encoder.0.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="Text-encoder weights fit no known layout"):
        text_encoder_state_for(pipe.text_encoder, {"vision_model.x": torch.zeros(1)})
    with pytest.raises(ValueError, match="Only 1 of 2 CompVis/LDM UNet tensors have a diffusers name"):
        unet_state_for(
            pipe.unet,
            {
                "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1),
                "model.diffusion_model.foo.weight": torch.zeros(1),
            },
        )


def _pixels(sample) -> np.ndarray:
    return np.asarray(sample.decode(), dtype=np.int16)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickles_load_only_with_weights_only(tmp_path):
    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"w": _Payload()}, f)
    with pytest.raises(ValueError, match="cannot be read safely"):
        load_state_dict(tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="unknown format; valid: .safetensors, .bin"):
        (tmp_path / "w.onnx").write_bytes(b"x")
        load_state_dict(tmp_path / "w.onnx")


class _Touch:
    """A pickled object whose loading would create a file."""

    def __init__(self, path) -> None:
        self.path = path

    def __reduce__(self):
        from pathlib import Path

        return (Path.touch, (Path(self.path),))


def test_a_file_that_is_no_checkpoint_or_needs_code_is_named_without_suggesting_unsafe_loading(tmp_path):
    from generation.weights import check_weights_file

    marker = tmp_path / "ran"
    garbage = tmp_path / "unet.bin"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    needs_code = tmp_path / "unet.ckpt"
    torch.save({"w": torch.ones(2), "hook": _Touch(marker)}, needs_code)
    plain = tmp_path / "plain.pt"
    with open(plain, "wb") as f:
        pickle.dump({"w": _Touch(marker)}, f, protocol=4)
    cases = {
        garbage: "cannot be read safely: it is not a checkpoint (neither a safetensors file nor a PyTorch state dict)",
        needs_code: "cannot be read safely: it is a pickle that needs code to load (builtins.getattr, pathlib.Path, "
        "pathlib.PosixPath), which is never run",
        plain: "it is a pickle that needs code to load (pathlib.Path.touch, pathlib.PosixPath), which is never run",
    }
    for path, message in cases.items():
        for read in (load_state_dict, check_weights_file):
            with pytest.raises(ValueError) as err:
                read(path)
            text = str(err.value)
            assert message in text and path.name in text and "\n" not in text
            assert "weights_only=False" not in text and "trust" not in text  # torch's advice is not passed on
    assert not marker.exists()


@pytest.mark.slow
def test_ray_distributor_gives_the_local_result(tiny_pipeline_dir, tmp_path):
    ray = pytest.importorskip("ray")
    options = dict(models=[str(tiny_pipeline_dir)], concepts=["church"], kinds=["forget"], max_prompts=6)
    options |= dict(steps=2, height=64, width=64, samples_per_shard=2, progress=False)
    run_job(JobConfig(out=str(tmp_path / "local"), **options))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = run_job(JobConfig(out=str(tmp_path / "ray"), distributor="ray", **options))
    finally:
        ray.shutdown()
    assert summary.complete and summary.written == 3
    local, remote = ({s.key: s for s in iter_samples(tmp_path / name)} for name in ("local", "ray"))
    assert local.keys() == remote.keys() and len(local) == 6
    for key, sample in local.items():
        # Ray workers run torch with one thread: float sums in another order can move a pixel by one level
        assert {**sample.record, "sha256": None} == {**remote[key].record, "sha256": None}
        assert np.abs(_pixels(sample) - _pixels(remote[key])).max() <= 1


def test_component_folders_replace_the_base_parts(tiny_pipeline_dir, tmp_path, original):
    from generation.tiny import save_tiny_pipeline

    other = save_tiny_pipeline(tmp_path / "other", seed=5)
    changed = render(tmp_path / "d", {"base": str(tiny_pipeline_dir), "unet": str(other / "unet")})
    assert all(changed[k] != original[k] for k in original)
    whole = render(tmp_path / "w", {"base": str(tiny_pipeline_dir), "pipeline": str(other), "name": "whole"})
    assert all(whole[k] != changed[k] for k in original)
    with pytest.raises(ValueError, match="neither a weights file, a folder, nor a Hub reference"):
        load_pipeline(ModelSpec(base=str(tiny_pipeline_dir), text_encoder="missing"))
