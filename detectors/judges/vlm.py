"""A vision-language model asked a yes/no question, as a judge: ``vlm:model=ID_OR_PATH[,concept=…,question=…]``.

Any ``transformers`` image-text-to-text model works (``AutoProcessor`` + ``AutoModelForImageTextToText``:
Qwen2.5-VL, InternVL, LLaVA and LLaVA-Guard, Gemma 3 / ShieldGemma 2...). Each image goes into the model's own
chat template with the question; the probability that the concept is present is read from the model's
next-token scores after the generation prompt, never from generated text::

    P(present) = sum of softmax over the "yes" answer tokens / (that sum + the same over the "no" tokens)

so AUROC, calibration and thresholds work as for any judge. The answer tokens are the single-token spellings of
the ``yes`` and ``no`` words (with and without a leading space).

The renormalisation hides how much of the next-token distribution the answer words hold: a model that is not
answering (it starts a sentence, repeats the question, emits a special token) can put 2 % of its mass on yes/no and
still come out at P(yes) = 0.9. So every image's *answer mass*, P(yes words) + P(no words) before renormalising, is
reported (``Prediction.details["answer_mass"]``, the ``answer_mass`` column of ``judge eval``'s predictions.csv),
and a judgement whose mass is below ``min_mass`` is NaN: invalid, left out of the metrics and counted. The default
floor, 0.5, asks that the yes/no words be the model's answer rather than a minority of its continuations: below
it, some other continuation is more likely than any yes/no answer, and P(yes) describes a question the model is not
answering; ``min_mass=0`` keeps every judgement.

The question comes from the concept registry (a template per CatIGMU task filled with the concept's display name
and target words; a countable entity or property gets its article: "a church", "an apple", while a phrase that
already starts with a determiner, a proper name, a plural and the abstract tasks' mass nouns stay as written) or
from ``question=``, which may use ``{name}``, ``{target}``, ``{a_target}`` (the target with its article) and
``{targets}``. An image the processor cannot take, or a non-finite score, gives a NaN judgement: invalid
(``Prediction.valid``), counted apart, never "absent".
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dataigm.concepts import load_registry
from dataigm.devices import resolve_device
from detectors.judges.base import Judge
from detectors.judges.options import Option, parse_options, resolve_options, split_spec, to_list
from detectors.judges.registry import register_judge

logger = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
# one question per CatIGMU task (tier 3 of the category), filled from the concept registry
QUESTIONS = {
    "style": "Is this image in the style of {target}?",
    "entity": "Does this image show {a_target}?",
    "status": "Does this image show a person who is {target}?",
    "property": "Does this image show {a_target}?",
    "collective": "Does this image show {target}?",  # collective concepts are mass nouns: "violence"
}
# a phrase starting with one of these already has its determiner
DETERMINERS = frozenset("a an the some any this that these those one two several many".split())
# words whose spelling and sound disagree on "a" / "an"
_AN_BEFORE = ("hour", "honest", "honor", "honour", "heir")
_A_BEFORE = ("uni", "use", "usu", "eu", "one", "once", "ewe")
DEFAULT_MIN_MASS = 0.5
ANSWER_INSTRUCTION = " Answer with yes or no."
# what processors raise for an image they cannot take (too small for the patch grid, empty, odd shape)
_REFUSED = (ValueError, TypeError, ZeroDivisionError)
# the registered example, also shown by the error for a missing required option
EXAMPLE = "vlm:model=Qwen/Qwen2.5-VL-7B-Instruct,concept=nudity"
OPTIONS = (
    Option("model", str, None, "an image-text-to-text model folder or Hub id", required=True),
    Option("concept", str, None, "the dataset concept; a registry concept fills the default question"),
    Option(
        "question", str, None, "the yes/no question; may use {name}, {target}, {a_target}, {targets} of the concept"
    ),
    Option("yes", to_list, ["yes", "Yes"], "answer words meaning present, joined with '|'"),
    Option("no", to_list, ["no", "No"], "answer words meaning absent, joined with '|'"),
    Option("threshold", float, 0.5, "P(yes) from which the concept counts as present"),
    Option(
        "min_mass",
        float,
        DEFAULT_MIN_MASS,
        "the least next-token probability the yes and no words must hold together; below it the judgement is NaN "
        "(0: keep every judgement)",
    ),
    Option("dtype", str, "auto", f"weights' dtype: {', '.join(DTYPES)} (auto: bfloat16 on CUDA, else float32)"),
    Option("chat_template", str, None, "a Jinja chat template file, for a model that has none"),
)


def with_article(phrase: str) -> str:
    """``phrase`` with the indefinite article it needs: "church" -> "a church", "apple" -> "an apple".

    A phrase that already starts with a determiner ("the ocean", "a doctor"), a proper name (a capital first
    letter: "Vincent van Gogh") or a plural ("parachutes") is returned as written.
    """
    words = phrase.split()
    if not words:
        return phrase
    first = words[0]
    last = words[-1].lower()
    if first.lower() in DETERMINERS or first[0].isupper() or not first[0].isalpha():
        return phrase
    if last.endswith("s") and not last.endswith(("ss", "us", "is")):
        return phrase
    lowered = first.lower()
    vowel = lowered[0] in "aeiou"
    if lowered.startswith(_AN_BEFORE):
        vowel = True
    elif lowered.startswith(_A_BEFORE):
        vowel = False
    return ("an " if vowel else "a ") + phrase


def concept_question(concept: str | None, question: str | None) -> str:
    """The question for ``concept``: ``question`` (its placeholders filled from the registry) or the task's default.

    Raises:
        ValueError: neither is given, the concept is not in the registry while the question needs it, or the
            question names an unknown placeholder.
    """
    registry = load_registry()
    known = {c.id: c for c in registry}
    if question is None and concept is None:
        raise ValueError("The vlm judge needs a concept (its question comes from the registry) or a question")
    if concept not in known:
        if question is None:
            raise ValueError(
                f"Concept {concept!r} is not in the concept registry, so it has no default question; give "
                f"question=... or one of the registry's concepts: {', '.join(known)}"
            )
        if "{" in question:
            raise ValueError(
                f"The question {question!r} uses placeholders, which need a registry concept; concept={concept!r} "
                f"is not one of: {', '.join(known)}"
            )
        return question
    entry = known[concept]
    template = question or QUESTIONS.get(entry.category.split("/")[-1], "Does this image show {target}?")
    target = entry.targets[0]
    fields = {
        "name": entry.name,
        "target": target,
        "a_target": with_article(target),
        "targets": ", ".join(entry.targets),
    }
    try:
        text = template.format(**fields)
    except (KeyError, IndexError, ValueError) as err:
        raise ValueError(
            f"The question {template!r} has a bad placeholder ({err}); valid: {{name}}, {{target}}, {{a_target}}, "
            "{targets}"
        ) from None
    return text if question else text + ANSWER_INSTRUCTION


def _rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


class VlmJudge(Judge):
    """A yes/no question to an image-text-to-text model, scored from its next-token distribution."""

    kind = "vlm"
    detail_names = ("answer_mass",)

    def __init__(
        self,
        model: str,
        concept: str | None = None,
        question: str | None = None,
        yes: list[str] | None = None,
        no: list[str] | None = None,
        threshold: float = 0.5,
        min_mass: float = DEFAULT_MIN_MASS,
        dtype: str = "auto",
        chat_template: str | None = None,
        spec: str = "",
        device: str = "cpu",
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if dtype not in DTYPES:
            raise ValueError(f"Unknown dtype {dtype!r}; valid dtypes: {', '.join(DTYPES)}")
        if not 0.0 <= min_mass <= 1.0:
            raise ValueError(f"min_mass={min_mass} is not a probability; give a number in [0, 1] (0 keeps all)")
        self.min_mass = float(min_mass)
        self.question = concept_question(concept, question)
        concept = concept or "vlm"
        super().__init__([concept], {concept: threshold}, spec, device)
        self.model_id = model
        if dtype == "auto":
            dtype = "bfloat16" if self.device.type == "cuda" else "float32"
        self.dtype = getattr(torch, dtype)
        try:
            self.processor = AutoProcessor.from_pretrained(model)
        except OSError as err:
            raise ValueError(
                f"Cannot load the VLM {model!r} ({err}); give a local folder or a reachable Hub id"
            ) from None
        if chat_template is not None:
            path = Path(chat_template)
            if not path.is_file():
                raise ValueError(f"chat_template={chat_template!r} does not exist; give a Jinja template file")
            self.processor.chat_template = path.read_text(encoding="utf-8")
        tokenizer = self.processor.tokenizer
        if not (getattr(self.processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)):
            raise ValueError(
                f"The VLM {model!r} has no chat template (neither its processor nor its tokenizer), so the question "
                "cannot be put to it; give one with chat_template=PATH (a Jinja file)"
            )
        tokenizer.padding_side = "left"  # the next-token position is the last one in every row
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.question}]}]
        self.prompt = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        self.yes_words, self.no_words = list(yes or ["yes", "Yes"]), list(no or ["no", "No"])
        self.yes_ids = _answer_ids(tokenizer, self.yes_words, "yes", model)
        self.no_ids = _answer_ids(tokenizer, self.no_words, "no", model)
        shared = sorted(set(self.yes_ids) & set(self.no_ids))
        if shared:
            raise ValueError(f"The yes and no answer words share token(s) {shared}; give distinct words")
        try:  # the weights last: every option above is checked before gigabytes are read
            self.model = AutoModelForImageTextToText.from_pretrained(model, dtype=self.dtype).eval().to(self.device)
        except OSError as err:
            raise ValueError(
                f"Cannot load the VLM {model!r} ({err}); give a local folder or a reachable Hub id"
            ) from None
        except ValueError as err:  # transformers: a configuration without an image-text-to-text class
            raise ValueError(f"{model!r} is not an image-text-to-text model ({str(err).splitlines()[0]})") from None
        self._keep_last = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self.image_transform = _rgb

    @classmethod
    def from_spec(cls, spec: str, device: str = "cpu") -> VlmJudge:
        """Build from ``vlm:model=…[,concept=…,question=…,yes=…,no=…,threshold=…,dtype=…,chat_template=…]``."""
        kind, rest = split_spec(spec)
        options = resolve_options(kind, parse_options(rest), OPTIONS, EXAMPLE)
        return cls(spec=spec, device=device, **options)

    def to(self, device) -> VlmJudge:
        super().to(device)
        self.model.to(self.device)
        return self

    def _inputs(self, images: list[Image.Image]):
        return self.processor(text=[self.prompt] * len(images), images=images, return_tensors="pt", padding=True)

    def forward(self, batch: list[Image.Image]) -> tuple[np.ndarray, None, dict[str, np.ndarray]]:
        probs, mass = np.full((len(batch), 1), np.nan), np.full(len(batch), np.nan)
        try:
            probs[:, 0], mass[:] = self._answer(self._inputs(batch))
            return probs, None, {"answer_mass": mass}
        except _REFUSED as err:  # the processor refused an image: find which, judge the rest
            logger.warning("the VLM processor refused a batch (%s); judging its %d images one by one", err, len(batch))
        for row, image in enumerate(batch):
            try:
                inputs = self._inputs([image])
            except _REFUSED as err:
                logger.warning("the VLM processor cannot take an image of size %s (%s): no judgement", image.size, err)
                continue
            (probs[row, 0],), (mass[row],) = self._answer(inputs)
        return probs, None, {"answer_mass": mass}

    def _answer(self, inputs: Any) -> tuple[np.ndarray, np.ndarray]:
        """(P(yes) among the answer tokens, the answer tokens' probability mass) at the next-token position of each
        row; P(yes) is NaN where the mass is below ``min_mass``."""
        import torch

        inputs = inputs.to(self.device, dtype=self.dtype)  # BatchFeature: only floating tensors change dtype
        mask = inputs.get("attention_mask")
        left_padded = mask is None or bool(mask[:, -1].all())
        with torch.inference_mode():
            if left_padded and self._keep_last:
                logits = self.model(**inputs, logits_to_keep=1).logits[:, -1]
            else:  # the last attended position of each row
                last = mask.shape[1] - 1 - mask.flip(1).float().argmax(dim=1)
                full = self.model(**inputs).logits
                logits = full[torch.arange(full.shape[0], device=full.device), last]
        logp = logits.float().log_softmax(dim=-1)
        yes = logp[:, self.yes_ids].logsumexp(dim=-1)
        no = logp[:, self.no_ids].logsumexp(dim=-1)
        p_yes = torch.sigmoid(yes - no).double().cpu().numpy()  # = P(yes) / (P(yes) + P(no))
        mass = torch.logaddexp(yes, no).exp().double().cpu().numpy()  # P(yes) + P(no): the ids are disjoint
        below = mass < self.min_mass
        if below.any():
            logger.info(
                "%d image(s) with answer mass below min_mass=%g: no judgement", int(below.sum()), self.min_mass
            )
        return np.where(below, np.nan, p_yes), mass

    def describe(self) -> dict:
        return {
            **super().describe(),
            "model": self.model_id,
            "question": self.question,
            "answers": {"yes": self.yes_words, "no": self.no_words},
            "min_mass": self.min_mass,
            "reading": [
                "P(present) = P(yes) / (P(yes) + P(no)) from the model's next-token distribution after the question "
                f"{self.question!r}. The answer mass P(yes) + P(no) is reported per image (predictions.csv "
                f"`answer_mass`); a judgement whose mass is below {self.min_mass:g} is NaN, left out of the metrics "
                "and counted, since the model is then not answering yes or no."
            ],
        }

    def _fingerprint_parts(self) -> dict:
        """The spec, the weights as loaded, the prompt as the chat template renders it, the answer tokens and
        the image preprocessing."""
        image_processor = getattr(self.processor, "image_processor", None)
        return {
            **super()._fingerprint_parts(),
            "dtype": str(self.dtype),
            "min_mass": self.min_mass,
            "prompt": self.prompt,
            "prompt_ids": self.processor.tokenizer(self.prompt, add_special_tokens=False)["input_ids"],
            "yes_ids": self.yes_ids,
            "no_ids": self.no_ids,
            "image_processor": image_processor.to_dict() if image_processor is not None else None,
        }


def _answer_ids(tokenizer, words: list[str], side: str, model: str) -> list[int]:
    """The token ids of the single-token spellings of ``words`` (as given and after a space)."""
    ids: list[int] = []
    for word in words:
        for spelling in (word, " " + word):
            tokens = tokenizer(spelling, add_special_tokens=False)["input_ids"]
            if len(tokens) == 1 and tokens[0] != tokenizer.unk_token_id and tokens[0] not in ids:
                ids.append(tokens[0])
    if not ids:
        raise ValueError(
            f"None of the {side} answer words {words} is a single token of {model!r}'s tokenizer; give others "
            f"with {side}=WORD|WORD"
        )
    return ids


@register_judge(
    "vlm",
    help="a vision-language model (transformers image-text-to-text) asked a yes/no question, P(present) from its "
    "yes/no next-token scores",
    example=EXAMPLE,
    options=OPTIONS,
)
def load_vlm(spec: str, device: str | None = None) -> VlmJudge:
    """``vlm:OPTIONS`` -> :class:`VlmJudge` on ``device`` (auto: CUDA when available)."""
    return VlmJudge.from_spec(spec, resolve_device(device))
