"""Native adversarial attacks on (unlearned) text-to-image models: UnlearnDiffAtk, Ring-A-Bell, P4D, MMA-Diffusion.

Light to import (torch and diffusers load inside the functions that run an attack).
"""

from .config import METHODS, AttackConfig
from .runner import AttackSummary, run_attack

__all__ = ["METHODS", "AttackConfig", "AttackSummary", "run_attack"]
