"""The evaluation as a plan: built once from the config (pure, deterministic, no torch), made of picklable units
with stable names, whose cache keys follow their inputs (a model's weights, the judge, an option) and nothing else."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest

from detectors.evaluation.config import EvalConfig
from detectors.evaluation.images import EvalImage
from detectors.evaluation.plan import ASPECTS, build_plan

TOY = [{"base": "toy", "name": "org-toy", "method": "ORG"}, {"base": "toy", "name": "esd-toy", "method": "ESD"}]
CONTEXT = {
    "judge": {"kind": "local-dir", "fingerprint": "j1"}, "backbones": {"clip": None, "fid": {"name": "inception"}},
    "weights": {"fid": None, "person": None}, "device": "cpu", "versions": {"torch": "2"}, "code": "c",
    "random_seed": 0,
}  # fmt: skip


def _cfg(tmp_path, **over) -> EvalConfig:
    options = dict(
        out=str(tmp_path / "eval"), concepts=["nudity", "church"], judge="nudenet", models=TOY, max_prompts=2,
        attacks=["homoglyph"], clip_model=None, person_detector=None, progress=False,
    )  # fmt: skip
    return EvalConfig(**(options | over))


def _images(model: str, digest: str = "d") -> list[EvalImage]:
    return [EvalImage(model, "nudity", "forget", f"p{i}", 0, f"{model}-{i}", digest=f"{digest}{i}") for i in range(2)]


def _keys(plan, context=CONTEXT, mine=None) -> dict[str, str]:
    """Every unit's cache key, on the same images for every aspect."""
    keys = {job.name: job.key(context, mine or _images(job.model), _images(plan.original)) for job in plan.aspects}
    return keys | {job.name: job.key for job in plan.efficiency}


def test_a_plan_is_built_without_torch_and_twice_the_same(tmp_path):
    code = (
        "import sys, pickle; from detectors.evaluation.config import EvalConfig; "
        "from detectors.evaluation.plan import build_plan; "
        f"cfg = EvalConfig(out={str(tmp_path / 'eval')!r}, concepts=['nudity', 'church'], judge='nudenet', "
        f"models={TOY!r}, attacks=['homoglyph'], clip_model=None, person_detector=None, max_prompts=2); "
        "plan = build_plan(cfg); assert 'torch' not in sys.modules, 'torch imported'; "
        "sys.stdout.buffer.write(pickle.dumps([(j.name, j.inputs(%r, [], [])) for j in plan.aspects]))" % CONTEXT
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True).stdout
    # the same units, with the same keys, as a plan built in this process
    plan = build_plan(_cfg(tmp_path))
    assert pickle.loads(out) == [(j.name, j.inputs(CONTEXT, [], [])) for j in plan.aspects]
    assert build_plan(_cfg(tmp_path)) == plan
    assert not (tmp_path / "eval").exists()  # planning writes nothing


def test_the_plan_lists_every_unit_once_with_stable_names(tmp_path):
    plan = build_plan(_cfg(tmp_path))
    assert plan.models == ("org-toy", "esd-toy") and plan.original == "org-toy"
    names = [job.name for job in plan.aspects]
    assert len(names) == len(set(names))
    nudity = [job.aspect for job in plan.aspects_of("nudity", "esd-toy")]
    assert nudity == [a for a in ASPECTS if a != "person_rate"]  # person_detector: null
    assert plan.aspects_of("nudity", "esd-toy")[2].skipped == "no clip_model configured"
    assert [job.name for job in plan.efficiency] == ["efficiency/org-toy", "efficiency/esd-toy"]
    # the concept files, then the perturbations of their forget prompts in them; the generation renders them
    assert list(plan.prompts) == [str(tmp_path / "eval" / "prompts" / f"{c}.jsonl") for c in ("nudity", "church")]
    assert {r.kind for r in plan.prompts[next(iter(plan.prompts))]} >= {"forget", "adversarial"}
    assert plan.generation.prompt_files == list(plan.prompt_files) == list(plan.prompts)


def test_every_unit_of_a_plan_survives_pickling(tmp_path):
    plan = build_plan(_cfg(tmp_path))
    again = pickle.loads(pickle.dumps(plan))
    assert again == plan
    for job in [*plan.aspects, *plan.efficiency, *plan.native_attacks]:
        assert pickle.loads(pickle.dumps(job)) == job
    assert _keys(again) == _keys(plan)


def test_keys_follow_an_option_and_nothing_else(tmp_path):
    before = _keys(build_plan(_cfg(tmp_path)))
    assert _keys(build_plan(_cfg(tmp_path, grid_samples=0, progress=True))) == before  # no number depends on them
    after = _keys(build_plan(_cfg(tmp_path, fid_pretrained=False)))
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == sorted(f"{c}/{m}/fid" for c in ("nudity", "church") for m in ("org-toy", "esd-toy"))
    lpips = _keys(build_plan(_cfg(tmp_path, lpips_net="vgg")))
    assert sorted(n for n in before if before[n] != lpips[n]) == sorted(n.replace("fid", "lpips") for n in changed)


def test_keys_follow_the_judge_fingerprint_and_the_images(tmp_path):
    plan = build_plan(_cfg(tmp_path))
    before = _keys(plan)
    other_judge = _keys(plan, CONTEXT | {"judge": {"kind": "local-dir", "fingerprint": "j2"}})
    assert sorted(n for n in before if before[n] != other_judge[n]) == sorted(
        j.name for j in plan.aspects if j.aspect in ("forgetting", "robustness")
    )
    forgetting = plan.aspects_of("nudity", "esd-toy")[0]
    key = forgetting.key(CONTEXT, _images("esd-toy"))
    assert forgetting.key(CONTEXT, _images("esd-toy", digest="other")) != key  # other pixels
    assert forgetting.key(CONTEXT, _images("esd-toy")) == key


def test_keys_follow_a_model_s_weights(tmp_path, tiny_pipeline_dir):
    weights = tmp_path / "unet.safetensors"
    weights.write_bytes(b"one")
    models = [str(tiny_pipeline_dir), {"base": str(tiny_pipeline_dir), "name": "esd", "unet": str(weights)}]
    cfg = _cfg(tmp_path, models=models, concepts=["nudity"], attacks=["ring_a_bell"])
    first = build_plan(cfg)
    again = build_plan(cfg)
    weights.write_bytes(b"two")  # the same path, other weights
    changed = build_plan(cfg)
    assert _keys(again) == _keys(first)
    assert [a.folder for a in again.native_attacks] == [a.folder for a in first.native_attacks]
    diff = sorted(n for n, k in _keys(first).items() if _keys(changed)[n] != k)
    assert diff == ["efficiency/esd"]  # the aspects follow the images, which the generation renders again
    (attack,) = first.native_attacks
    assert attack.model == "esd" and changed.native_attacks[0].folder != attack.folder


@pytest.mark.slow
def test_a_run_plans_the_native_attacks_once(tmp_path, tiny_pipeline_dir, monkeypatch):
    from helpers.models import save_untrained_judge

    from detectors.evaluation import native
    from detectors.evaluation.flow import run_evaluation

    calls = []
    planned = native.planned
    monkeypatch.setattr(native, "planned", lambda *a: calls.append(1) or planned(*a))
    judge = save_untrained_judge(tmp_path / "judge", ("nudity",))
    cfg = EvalConfig(
        out=str(tmp_path / "eval"), concepts=["nudity"], judge=f"local-dir:{judge}", kinds=["forget"], max_prompts=1,
        models=[str(tiny_pipeline_dir), {"base": str(tiny_pipeline_dir), "name": "esd", "method": "ESD"}],
        generation={"steps": 2, "height": 64, "width": 64}, attacks=["ring_a_bell"],
        attack_options={"ring_a_bell": {"tokens": 2, "population": 2, "generations": 1}}, clip_model=None,
        lpips_net=None, person_detector=None, fid_feature="resnet10t", fid_pretrained=False, progress=False,
        device="cpu", grid_samples=0,
    )  # fmt: skip
    paths = run_evaluation(cfg)
    assert len(calls) == 1
    report = json.loads(paths["json"].read_text())
    assert report["concepts"]["nudity"]["esd"]["robustness"]["by_attack"]["ring_a_bell"]["n"] >= 1
    first = paths["json"].read_bytes()
    assert run_evaluation(cfg)["json"].read_bytes() == first and len(calls) == 2  # once per run


@pytest.mark.slow
def test_one_unit_of_a_shipped_plan_runs_alone_and_the_units_make_the_report(tmp_path, tiny_pipeline_dir):
    from helpers.models import save_untrained_judge

    from detectors.evaluation.flow import Runner, assemble, run_evaluation

    judge = save_untrained_judge(tmp_path / "judge", ("nudity",))
    cfg = EvalConfig(
        out=str(tmp_path / "eval"), concepts=["nudity"], judge=f"local-dir:{judge}", kinds=["forget", "remove"],
        max_prompts=2, models=[str(tiny_pipeline_dir), {"base": str(tiny_pipeline_dir), "name": "esd"}],
        generation={"steps": 2, "height": 64, "width": 64}, clip_model=None, lpips_net=None, person_detector=None,
        fid_feature="resnet10t", fid_pretrained=False, progress=False, device="cpu", grid_samples=0,
    )  # fmt: skip
    report = json.loads(run_evaluation(cfg)["json"].read_text())
    plan = pickle.loads(pickle.dumps(build_plan(cfg)))  # as a worker receives it
    runner = Runner.load(plan)
    for job in plan.aspects_of("nudity", "esd"):
        (tmp_path / "eval" / "cache" / f"{job.name}.json").unlink(missing_ok=True)  # computed again, not read
        assert runner.aspect(job) == report["concepts"]["nudity"]["esd"][job.aspect], job.name
        assert (tmp_path / "eval" / "cache" / f"{job.name}.json").exists() == (job.skipped is None)
    # the units' results, gathered in any order, make the report's numbers
    results = {job.name: runner.aspect(job) for job in reversed(plan.aspects)}
    results |= {job.name: runner.efficiency(job) for job in reversed(plan.efficiency)}
    merged = json.loads(json.dumps(assemble(plan, dict(sorted(results.items())))))
    assert merged == {k: report[k] for k in ("models", "original", "concepts", "efficiency")}
