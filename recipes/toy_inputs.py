"""Write the inputs of ``recipes/toy.yaml`` and a copy of the recipe into one folder, offline, in seconds.

    python recipes/toy_inputs.py WORKDIR
    dataigm build WORKDIR/toy.yaml --out toy-dataset

WORKDIR gets ``images/{church,other}/`` (photo-style toy renders, a folder source), ``hub-church/`` (a Hugging
Face dataset written by ``datasets`` as parquet with an ``image`` and a ``ClassLabel`` ``label`` column, a local
Hub dataset) and ``toy.yaml``. Some images are there twice on purpose, so that the recipe's dedup rule has
something to do: one church image twice in the folder, and one folder image again in the Hub dataset.
"""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

CHURCH = ["a photo of a church in a field", "a photo of an old stone church in the snow", "a church by a lake"]
OTHER = ["a photo of a lake at dawn", "a photo of a city at night", "a mountain beach", "a bird over a field"]


def _render(prompt: str, seed: int) -> bytes:
    from generation.toy import ToyPipeline

    image, _ = ToyPipeline("photo").render(prompt, seed, size=(64, 64))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def write_toy_inputs(workdir: str | Path) -> Path:
    """Write the images, the local Hub dataset and ``toy.yaml`` into ``workdir``; returns the recipe's path."""
    import datasets

    workdir = Path(workdir)
    folder = workdir / "images"
    for name, prompts, offset in (("church", CHURCH, 0), ("other", OTHER, 100)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(8):
            (folder / name / f"{name}-{i}.png").write_bytes(_render(prompts[i % len(prompts)], offset + i))
    shutil.copyfile(folder / "church" / "church-0.png", folder / "church" / "church-0-copy.png")
    rows = [(_render(CHURCH[i % 3], 200 + i), 1) for i in range(5)] + [
        (_render(OTHER[i % 4], 300 + i), 0) for i in range(5)
    ]
    rows.append(((folder / "other" / "other-1.png").read_bytes(), 0))  # also in the folder source
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["other", "church"])})
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": b, "path": None} for b, _ in rows], "label": [y for _, y in rows]}, features=features
    )
    (workdir / "hub-church" / "data").mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(workdir / "hub-church" / "data" / "train-00000-of-00001.parquet"))
    recipe = workdir / "toy.yaml"
    shutil.copyfile(Path(__file__).with_name("toy.yaml"), recipe)
    return recipe


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python recipes/toy_inputs.py WORKDIR")
    print(f"wrote {write_toy_inputs(sys.argv[1])}")
