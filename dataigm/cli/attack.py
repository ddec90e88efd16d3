"""``dataigm attack``: UnlearnDiffAtk or Ring-A-Bell against a model -> a shareable adversarial prompt file."""

from __future__ import annotations

from .options import add_options, options_of

HELP = "attack a model (unlearndiffatk, ring_a_bell, p4d, mma_diffusion): an adversarial prompt file for generate and evaluate"


def configure(parser) -> None:
    from generation.attacks.config import AttackConfig  # light: no torch or diffusers

    add_options(parser, AttackConfig)


def run(cfg) -> int:
    from generation.attacks import AttackConfig, run_attack

    config = AttackConfig(**options_of(AttackConfig, cfg))
    judge = None
    if config.judge is not None:  # the checkpoints' judge (generation never loads a judge itself)
        from dataigm.devices import resolve_device
        from detectors.judges import load_judge

        judge = load_judge(config.judge, device=resolve_device(config.device))
    summary = run_attack(config, judge)
    print(summary.text())
    return 0
