"""``dataigm evaluate``: the EvalIGMU aspects of unlearned models, judged by a DataIGM judge."""

from __future__ import annotations

import dataclasses
import typing

HELP = "evaluate unlearned models: forgetting, preservation, image quality, robustness, efficiency"


def configure(parser) -> None:
    from detectors.evaluation.config import EvalConfig

    hints = typing.get_type_hints(EvalConfig)
    for f in dataclasses.fields(EvalConfig):
        kind = list[str | dict] if f.name == "models" else hints[f.name]
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        default = (
            None if required else (f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default)
        )
        parser.add_argument(
            f"--{f.name.replace('_', '-')}", dest=f.name, type=kind | None if required else kind, default=default
        )


def run(cfg) -> int:
    from detectors.evaluation.config import EvalConfig
    from detectors.evaluation.flow import run_evaluation

    options = {f.name: cfg[f.name] for f in dataclasses.fields(EvalConfig)}
    missing = [name for name in ("out", "concepts", "judge") if options[name] is None]
    if missing:
        raise ValueError(f"dataigm evaluate needs {', '.join('--' + m for m in missing)}")
    paths = run_evaluation(EvalConfig(**options))
    print(f"report: {paths['markdown']} and {paths['json']}")
    print(paths["markdown"].read_text(encoding="utf-8"))
    return 0
