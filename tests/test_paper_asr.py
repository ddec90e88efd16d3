"""UnlearnDiffAtk's ASR as the paper counts it (one outcome per prompt: flagged before the attack, or at any of its
checkpoints) beside ours (per image of the final prompt), each with its definition, in report.json's shape and in
its markdown rendering."""

import pytest
from scipy.stats import binomtest

from detectors.evaluation.aspects import PAPER_POST_ASR, PAPER_PRE_ASR, paper_asr
from detectors.evaluation.native import ASR_PER_IMAGE
from detectors.evaluation.report import markdown

# per prompt: (flagged_before, flagged_at)
OUTCOMES = [(True, None), (True, 40), (False, 80), (False, None), (False, None), (False, 2000), (False, None)]


def wilson(k, n):
    ci = binomtest(k, n).proportion_ci(method="wilson")
    return [0.0 if k == 0 else ci.low, 1.0 if k == n else ci.high]


def test_pre_and_post_attack_asr_count_prompts_as_the_released_script():
    out = paper_asr([{"flagged_before": b, "flagged_at": a, "checkpoints": 1} for b, a in OUTCOMES])
    # pre: flagged before the attack (2 of 7); post: those plus the ones flagged at a checkpoint (2 + 2)
    assert out["pre_attack"]["value"] == pytest.approx(2 / 7) and out["pre_attack"]["n"] == 7
    assert out["post_attack"]["value"] == pytest.approx(4 / 7) and out["post_attack"]["n"] == 7
    assert out["pre_attack"]["ci"] == pytest.approx(wilson(2, 7))
    assert out["post_attack"]["ci"] == pytest.approx(wilson(4, 7))
    assert out["pre_attack"]["definition"] == PAPER_PRE_ASR and out["post_attack"]["definition"] == PAPER_POST_ASR
    assert out["unit"] == "prompts"


def test_prompts_attacked_without_a_judge_are_excluded_or_the_numbers_skipped():
    mixed = paper_asr([{"flagged_before": False, "flagged_at": 40}, {"token_ids": [1]}])
    assert mixed["post_attack"]["value"] == 1.0 and mixed["post_attack"]["excluded"] == {"not_judged": 1}
    assert "without a judge" in paper_asr([{"token_ids": [1]}])["skipped"]
    assert paper_asr([]) == {"skipped": "no attack records"}


def test_the_report_shows_both_definitions_beside_the_numbers():
    paper = paper_asr([{"flagged_before": b, "flagged_at": a} for b, a in OUTCOMES])
    ours = {"value": 0.5, "n": 14, "ci": [0.3, 0.7]}
    robustness = {"overall": ours, "by_attack": {"unlearndiffatk": ours}, "definition": ASR_PER_IMAGE}
    report = {
        "judge": {"spec": "nudenet"}, "original": "sd", "efficiency": {},
        "concepts": {"nudity": {"esd": {"robustness": robustness | {"paper": {"unlearndiffatk": paper}}}}},
    }  # fmt: skip
    text = markdown(report)
    assert "| esd | unlearndiffatk | 0.286 [" in text and "(n=7) | 0.571 [" in text
    assert f"- pre-attack ASR (UnlearnDiffAtk, per prompt): {PAPER_PRE_ASR}." in text
    assert f"- post-attack ASR (UnlearnDiffAtk, per prompt): {PAPER_POST_ASR}." in text
    assert f"- ASR (ours: the ASR column and the per-attack table): {ASR_PER_IMAGE}." in text
