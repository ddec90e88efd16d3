"""Render the work items of one shard into samples: batched pipeline calls, encoding in a pool off the rendering path."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from functools import partial

import numpy as np

from dataigm.concepts import ConceptRegistry
from dataigm.sample import Sample
from dataigm.schema import LABELS

from .config import JobConfig
from .families import check_spec_for_family
from .job import ShardTask, WorkItem, sample_key
from .pipeline import LoadedModel

logger = logging.getLogger(__name__)


def image_flag(image: np.ndarray) -> str | None:
    """``"nan"`` if any value is not finite, ``"all_black"`` if no pixel reaches 1/255, else None."""
    if not np.isfinite(image).all():
        return "nan"
    if image.max() < 1.0 / 255:
        return "all_black"
    return None


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """PNG bytes of a float image in [0, 1] at zlib ``level`` (6: Pillow's default)."""
    from PIL import Image

    pixels = (np.nan_to_num(image, nan=0.0).clip(0, 1) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=level)
    return buffer.getvalue()


def encoder_threads() -> int:
    """PNG encoding threads: the host's usable cores (Pillow's encoder releases the GIL)."""
    try:
        return max(2, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(2, os.cpu_count() or 1)


def sampling_of(item: WorkItem, model: LoadedModel, cfg: JobConfig) -> tuple:
    """The call settings of one item: the prompt's own, else the model spec's, else the job's.

    A guidance-distilled family (Flux) takes the spec's guidance or its own default: the prompt's and the job's
    are classifier-free guidance scales, which it does not have (``None`` when the model takes no guidance).
    A negative prompt given to a family without one is an error, never dropped.
    """
    spec, family = model.spec, model.family
    negative = spec.negative_prompt if spec.negative_prompt is not None else cfg.negative_prompt
    if family is not None and family.distilled_guidance:
        check_spec_for_family(spec, family, cfg.negative_prompt)
        guidance = (
            (spec.guidance if spec.guidance is not None else family.default_guidance) if model.guidance_input else None
        )
        negative = None
    else:
        guidance = item.prompt.guidance if item.prompt.guidance is not None else spec.guidance
        guidance = guidance if guidance is not None else cfg.guidance
    return (spec.steps or cfg.steps, guidance, spec.height or cfg.height, spec.width or cfg.width, negative)


def batches(items: tuple[WorkItem, ...], batch_size: int, settings: Callable) -> Iterator[list[WorkItem]]:
    """Consecutive items with the same call settings, at most ``batch_size`` at a time."""
    batch: list[WorkItem] = []
    for item in items:
        if batch and (len(batch) == batch_size or settings(item) != settings(batch[0])):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def generate_batch(model: LoadedModel, batch: list[WorkItem], settings: tuple) -> tuple[np.ndarray, list | None]:
    """One pipeline call; one CPU generator per item makes each image independent of its batch.

    Returns the images and, from a pipeline that knows it (the toy world), which concepts each shows.
    """
    import torch

    generators = [torch.Generator("cpu").manual_seed(item.seed) for item in batch]
    out = model.pipe(**call_arguments(model, [item.prompt.text for item in batch], generators, settings))
    return np.asarray(out.images, dtype=np.float32), getattr(out, "concepts_present", None)


def call_arguments(model: LoadedModel, prompts: list[str], generators: list | None, settings: tuple) -> dict:
    """The pipeline call of ``prompts`` with ``settings``: only the arguments the model's family takes."""
    steps, guidance, height, width, negative = settings
    arguments = dict(prompt=prompts, generator=generators, num_inference_steps=steps, height=height, width=width)
    if guidance is not None:
        arguments["guidance_scale"] = guidance
    if model.family is None or model.family.negative_prompt:
        arguments["negative_prompt"] = [negative] * len(prompts) if negative else None
    return arguments | {"output_type": "np"}


def render_shard(
    task: ShardTask,
    model: LoadedModel,
    cfg: JobConfig,
    registry: ConceptRegistry,
    batch_size: int,
    encoder: Executor,
) -> list[Future[Sample]]:
    """Render ``task``'s batches; each sample (its PNG encoding) is a future of ``encoder``, in plan order.

    Returns once the last batch is rendered: the encodes of a shard finish while the next one renders,
    so a pool that outlives the shard keeps the model busy. :func:`shard_samples` waits for them.
    """
    settings = lambda item: sampling_of(item, model, cfg)  # noqa: E731
    pending: list[Future[Sample]] = []
    for batch in batches(task.items, batch_size, settings):
        batch_settings = settings(batch[0])
        images, truths = generate_batch(model, batch, batch_settings)
        for i, (item, image) in enumerate(zip(batch, images, strict=True)):
            present = truths[i].get(item.prompt.concept) if truths is not None else None
            sample = partial(_sample, item, batch_settings, image, present, model, registry, cfg.png_compress_level)
            pending.append(encoder.submit(sample))
    return pending


def shard_samples(pending: list[Future[Sample]]) -> list[Sample]:
    """The samples of :func:`render_shard`, once encoded; an encoding error is raised here."""
    return [future.result() for future in pending]


def _sample(
    item: WorkItem, settings: tuple, image: np.ndarray, present, model: LoadedModel, registry, level
) -> Sample:
    """The sample of one image; its label is the ground truth when the pipeline knows it, else the prompt's."""
    steps, guidance, _, _, _ = settings
    png, flag, (height, width) = encode_png(image, level), image_flag(image), image.shape[:2]
    concept = registry.get(item.prompt.concept)
    label = item.label if present is None else ("target" if present else "pair")
    record = {
        "concept": concept.id,
        "label": label,
        "category": concept.category,
        "source": "generated",
        "split": item.split,
        "prompt_id": item.prompt.prompt_id,
        "prompt": item.prompt.text,
        "prompt_kind": item.prompt.kind,
        "subtheme": item.prompt.subtheme,
        "attack": item.prompt.attack,
        "lang": item.prompt.lang,
        "model": model.spec.label,
        "model_id": model.spec.weights_base,
        "model_revision": model.model_revision,
        "method": model.spec.method,
        "checkpoint": model.checkpoint,
        "seed": item.seed,
        "steps": steps,
        "guidance": None if guidance is None else float(guidance),  # None: a model without guidance input
        "scheduler": model.scheduler,
        "height": int(height),
        "width": int(width),
        "image_flag": flag,
        "label_source": "prompt" if present is None else "generator",
    }
    key = sample_key(model.spec.label, item)  # the key the plan checked to be unique
    return Sample(key, png, "png", LABELS.index(label), record)
