"""``dataigm attack``: UnlearnDiffAtk or Ring-A-Bell against a model -> a shareable adversarial prompt file."""

from __future__ import annotations

from .options import add_options, options_of

HELP = "attack a model (unlearndiffatk, ring_a_bell): an adversarial prompt file for generate and evaluate"


def configure(parser) -> None:
    from generation.attacks.config import AttackConfig  # light: no torch or diffusers

    add_options(parser, AttackConfig)


def run(cfg) -> int:
    from generation.attacks import AttackConfig, run_attack

    summary = run_attack(AttackConfig(**options_of(AttackConfig, cfg)))
    print(summary.text())
    return 0
