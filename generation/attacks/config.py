"""The configuration of ``dataigm attack``: light (no torch), so the CLI builds its options from it.

Defaults follow the published attacks and their released configurations:

* UnlearnDiffAtk (Zhang et al., "To Generate or Not? Safety-Driven Unlearned Diffusion Models Are Still Easy To
  Generate Unsafe Images ... For Now", ECCV 2024, arXiv:2310.11868): per concept, the values of its released
  configuration (:data:`RELEASED`, from OPTML-Group/Diffusion-MU-Attack at commit 5a3e5d3): K tokens prepended
  to the prompt (5 for nudity and violence, 3 for church, Van Gogh and the other objects), 40 Adam steps
  (learning rate 0.01, weight decay 0.1) at each of 50 evenly spaced timesteps (t = 10, 30, ..., 990 of
  T = 1000), L2 denoising loss; a concept without a released configuration gets the defaults of the released
  command line (K = 3).
* Ring-A-Bell (Tsai et al., "Ring-A-Bell! How Reliable are Concept Removal Methods for Diffusion Models?",
  ICLR 2024; its released notebook): a prompt of K = 16 tokens, eta = 3 (nudity; 5.5 for violence), a genetic
  search with a population of 200 over 3000 generations, mutation rate 0.25, crossover rate 0.5.
* P4D (Chin et al., "Prompting4Debugging", ICML 2024; github:joycenerd/P4D at 2cf3cda9d458,
  configs/esd_nudity_optmz_config.json): P4D-N with N = 16 free tokens or P4D-K with a free token every K = 3 words,
  3000 AdamW steps (learning rate 0.1, weight decay 0.1), the decoded prompt scored every 50 steps by the CLIP
  ViT-H-14 image similarity of its image to the target image (the best kept).
* MMA-Diffusion, text modality (Yang et al., CVPR 2024; github:cure-lab/MMA-Diffusion at d5701a5dd1ad,
  src/textual_attack.py and its README's ``-i 1000``): 20 tokens, 1000 steps of token substitution, 512 candidates
  per step from the top 256 tokens per position, the concept's sensitive words banned.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from dataigm.concepts import ConceptRegistry, load_registry, split_dirs
from dataigm.distribute import DISTRIBUTORS

from ..spec import DTYPES

METHODS = ("unlearndiffatk", "ring_a_bell", "p4d", "mma_diffusion")
SCHEDULES = ("sequential", "random")
PROJECTIONS = ("cosine", "euclidean")  # how common.nearest_tokens projects an embedding onto a token
RING_A_BELL_TOKENS = 16
P4D_VARIANTS = ("n", "k")
# P4D's released configuration (configs/esd_nudity_optmz_config.json of joycenerd/P4D at 2cf3cda9d458)
P4D_RELEASED = {"tokens": 16, "iterations": 3000, "lr": 0.1, "weight_decay": 0.1}
P4D_CLIP = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"  # open_clip ViT-H-14 laion2b_s32b_b79k, its transformers copy
TARGET_STEPS = 50  # denoising steps of the rendered target images (UnlearnDiffAtk's; the evaluation passes its own)
P4D_TARGET_STEPS = 25  # configs/esd_nudity_optmz_config.json "num_inference_steps" (targets and scoring renders)
MMA_RELEASED = {"tokens": 20, "iterations": 1000}  # src/textual_attack.py of cure-lab/MMA-Diffusion, README -i 1000


@dataclass(frozen=True)
class Released:
    """UnlearnDiffAtk's released settings for one concept, and the file of OPTML-Group/Diffusion-MU-Attack (commit
    5a3e5d37fb87) they come from. ``timesteps`` is ``n_samples`` of src/tasks/classifier_.py (not in the configs)."""

    tokens: int
    source: str
    iterations: int = 40
    lr: float = 0.01
    weight_decay: float = 0.1
    timesteps: int = 50


_OBJECT = "configs/object/text_grad_esd_church_classifier.json"
# Each config is the `text_grad` attacker (UnlearnDiffAtk; `hard_prompt` is their P4D baseline). Parachute, tench
# and garbage truck have no config file: scripts/exp/object.sh runs them with `--attacker.k 3` on a config file
# missing from the repository, so their other values are those of the church config.
RELEASED = {
    "nudity": Released(5, "configs/nudity/text_grad_esd_nudity_classifier.json"),
    "violence": Released(5, "configs/violence/text_grad_esd_violence_classifier.json"),
    "church": Released(3, _OBJECT),
    "van_gogh": Released(3, "configs/style/text_grad_esd_vangogh_classsifier.json"),
    "parachute": Released(3, f"scripts/exp/object.sh (k); {_OBJECT} (the rest)"),
    "tench": Released(3, f"scripts/exp/object.sh (k); {_OBJECT} (the rest)"),
    "garbage_truck": Released(3, f"scripts/exp/object.sh (k); {_OBJECT} (the rest)"),
}
FALLBACK = Released(3, "src/execs/attack.py (the command line's defaults; no config for this concept)")
_RELEASED_FIELDS = ("tokens", "iterations", "lr", "weight_decay", "timesteps")


def released(concept: str) -> Released:
    """UnlearnDiffAtk's released settings for ``concept`` (:data:`FALLBACK` for a concept without a config)."""
    return RELEASED.get(concept, FALLBACK)


TRAIN_TIMESTEPS = 1000  # T of Stable Diffusion's noise schedule, over which the timestep grid is spread
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
# The options that decide an attack's outcome (recorded in each prompt and compared when a run resumes).
OUTCOME_FIELDS = {
    "unlearndiffatk": (
        "tokens", "iterations", "timesteps", "schedule", "lr", "weight_decay", "projection", "target_steps",
        "target_guidance", "original", "target_images", "judge", "base_seed", "dtype",
    ),
    "ring_a_bell": (
        "tokens", "eta", "population", "generations", "mutation_rate", "crossover_rate", "concept_prompts",
        "base_seed", "dtype",
    ),
    "mma_diffusion": (
        "tokens", "iterations", "mma_candidates", "mma_topk", "mma_banned", "mma_reference_rows", "base_seed", "dtype",
    ),
    "p4d": (
        "p4d_variant", "tokens", "p4d_every", "iterations", "lr", "weight_decay", "p4d_eval_every", "p4d_clip",
        "projection", "target_steps", "target_guidance", "original", "target_images", "base_seed", "dtype",
    ),
}  # fmt: skip
# Other methods' outcome options that mma_diffusion refuses when given (those with their own message left out)
MMA_FOREIGN = {n for names in OUTCOME_FIELDS.values() for n in names} - {
    *OUTCOME_FIELDS["mma_diffusion"], "original", "target_images", "judge", "p4d_variant", "p4d_every",
    "p4d_eval_every", "p4d_clip",
}  # fmt: skip


@dataclass
class AttackConfig:
    """What ``dataigm attack`` attacks, how, and where the adversarial prompts go.

    Every option is checked when the config is made, before a model is loaded or anything is written.

    Attributes:
        method: unlearndiffatk (white-box: the unlearned model's own denoising loss), ring_a_bell (text encoder
            only: a concept vector and a genetic search), p4d (white-box: the unlearned model's noise prediction
            matched to the original model's on the prompt) or mma_diffusion (text encoder only: token substitution
            towards the prompt's embedding, sensitive words banned)
        model: the attacked (unlearned) model: a Hub id, pipeline folder or model-spec YAML file
        concept: the concept the prompts ask for
        out: folder of the attack prompt file (CONCEPT-METHOD-MODEL.jsonl, kind adversarial), the resolved config
            and the rendered target images; a re-run resumes there
        prompts: JSONL file of forget prompts to attack (default: the concept's built-in forget prompts)
        max_prompts: at most this many prompts, spread over the set (default: all)
        tokens: adversarial tokens K: unlearndiffatk prepends K to the prompt (default: the released config of the
            concept: 5 for nudity and violence, 3 for church, van_gogh, parachute and concepts without one),
            ring_a_bell searches a prompt of K (default 16, released), p4d: N of P4D-N (default 16, released;
            refused with P4D-K), mma_diffusion: the prompt's tokens (default 20, released)
        original: unlearndiffatk, p4d: the model whose images are the targets (default: the attacked model's base
            without its unlearned parts); p4d also matches its noise predictions, so it must differ from the
            attacked model
        target_images: unlearndiffatk, p4d: folder of target images PROMPT_ID.png|jpg|webp instead of rendering
            them (p4d takes it with or without ``original``; unlearndiffatk, one of the two)
        iterations: unlearndiffatk: Adam steps at each timestep (default: the concept's released value, 40); p4d:
            AdamW steps (default 3000, released); mma_diffusion: substitution steps (default 1000, released)
        timesteps: unlearndiffatk: timesteps in the grid t = T/2n + kT/n, T = 1000 (default: released, 50)
        schedule: unlearndiffatk: sequential (released: each grid timestep in turn) or random (a grid timestep drawn
            at each step)
        lr: unlearndiffatk: Adam learning rate (default: the concept's released value, 0.01); p4d: 0.1
        weight_decay: unlearndiffatk: Adam weight decay (default: the concept's released value, 0.1); p4d: 0.1
        projection: unlearndiffatk: how an embedding snaps to a vocabulary token: cosine (the released hard-prompt
            code's rule) or euclidean
        target_steps: unlearndiffatk, p4d: denoising steps of the rendered target images (and of p4d's scoring
            renders); default 50, p4d 25 (its released num_inference_steps)
        target_guidance: unlearndiffatk: guidance scale of the rendered target images
        judge: unlearndiffatk: a judge spec (as in `dataigm judge eval`); when given, the attacked model renders the
            prompt before the attack and the adversarial prompt after each timestep's steps (the released
            checkpoints), the judge looks at each image, and a prompt's attack stops at its first flagged image
            (the released rule); each record keeps flagged_before and flagged_at, from which the paper's pre- and
            post-attack ASR follow. Images use the prompt's seed, target_steps and target_guidance
        eta: ring_a_bell: strength of the concept vector added to the prompt's embedding (released: 3 for nudity)
        population: ring_a_bell: candidates per generation (released: 200)
        generations: ring_a_bell: generations of the genetic search (released: 3000)
        mutation_rate: ring_a_bell: share of candidates with one token replaced per generation (released: 0.25)
        crossover_rate: ring_a_bell: chance of a survivor to breed two children by one-point crossover (released:
            0.5)
        p4d_variant: p4d: n (P4D-N: the prompt is N free tokens) or k (P4D-K: a free token before every
            p4d_every tokens of the prompt)
        p4d_every: p4d: K of P4D-K (released: 3; another value refused with P4D-N)
        p4d_eval_every: p4d: steps between two scorings of the decoded prompt (released: 50)
        p4d_clip: p4d: CLIP model (Hub id or folder) whose image similarity to the target image picks the best
            scored prompt (released: ViT-H-14 laion2b); null: the last step's prompt
        mma_candidates: mma_diffusion: prompts with one token substituted, scored per step (released: 512)
        mma_topk: mma_diffusion: tokens per position a substitution draws from (released: 256)
        mma_banned: mma_diffusion: words whose tokens (those containing one) are banned (default: for nudity the
            released list, else the words of the concept's targets and remove words, function words left out)
        mma_reference_rows: mma_diffusion: the one-hot gradient at the released code's rows, the padded sequence's
            first `tokens` positions with the start token, so each position's candidates come from the previous
            token's gradient (default: false, each token's own position)
        concept_prompts: ring_a_bell: JSONL file of forget prompts and their remove variants (parent_id) whose
            embedding differences make the concept vector (default: the concept's built-in pairs)
        batch_size: prompts attacked together (the attack of a prompt does not depend on it)
        dtype: fp32, fp16 or bf16 (half precision on GPU only; default: the model spec's)
        device: auto (CUDA when available, else CPU), cpu, cuda, cuda:N or mps
        base_seed: seed of prompts without their own: the seed `dataigm generate` gives their first image
        progress: show a progress bar
        concepts_dir: folders of concept YAML files added to the built-in registry, joined with os.pathsep (also
            $DATAIGM_CONCEPTS_DIR)
        distributor: local or ray: who attacks the batches (a batch of prompts is the unit of work); the prompt
            file is the one a single process writes
        num_workers: attack every num_workers-th batch only (default: torchrun / SLURM array / 1); the workers
            leave their batches beside the prompt file, and a run without a partition merges them
        worker_index: this worker's index in the partition
        ray_address: address of an existing Ray cluster (default: start a local one)
        num_gpus: GPUs per Ray task (default: 1 when CUDA is available, else 0)
        retries: extra attempts of a batch that failed before it is named as failed
    """

    method: str
    model: str
    concept: str
    out: str
    prompts: str | None = None
    max_prompts: int | None = None
    tokens: int | None = None
    original: str | None = None
    target_images: str | None = None
    iterations: int | None = None
    timesteps: int | None = None
    schedule: str = "sequential"
    lr: float | None = None
    weight_decay: float | None = None
    projection: str = "cosine"
    target_steps: int | None = None
    target_guidance: float = 7.5
    judge: str | None = None
    eta: float = 3.0
    population: int = 200
    generations: int = 3000
    mutation_rate: float = 0.25
    crossover_rate: float = 0.5
    p4d_variant: str = "n"
    p4d_every: int = 3
    p4d_eval_every: int = 50
    p4d_clip: str | None = P4D_CLIP
    mma_candidates: int = 512
    mma_topk: int = 256
    mma_banned: list[str] | None = None
    mma_reference_rows: bool = False
    concept_prompts: str | None = None
    batch_size: int = 8
    dtype: str | None = None
    device: str = "auto"
    base_seed: int = 0
    progress: bool = True
    concepts_dir: str | None = None
    distributor: str = "local"
    num_workers: int | None = None
    worker_index: int | None = None
    ray_address: str | None = None
    num_gpus: float | None = None
    retries: int = 2

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"Unknown attack method {self.method!r}; valid: {', '.join(METHODS)}")
        # read before the released defaults fill them: the other methods' options a user gave mma_diffusion
        foreign = self._given(MMA_FOREIGN)
        given_tokens = self.tokens is not None
        if self.tokens is None and self.method == "ring_a_bell":
            self.tokens = RING_A_BELL_TOKENS
        if self.method in ("p4d", "mma_diffusion"):
            for name, value in (P4D_RELEASED if self.method == "p4d" else MMA_RELEASED).items():
                if getattr(self, name) is None:
                    setattr(self, name, value)
            if self.p4d_variant not in P4D_VARIANTS:
                raise ValueError(f"Unknown p4d_variant {self.p4d_variant!r}; valid: {', '.join(P4D_VARIANTS)}")
        if self.target_steps is None:
            self.target_steps = P4D_TARGET_STEPS if self.method == "p4d" else TARGET_STEPS
        defaults = released(self.concept)
        for name in _RELEASED_FIELDS:  # what the user leaves unset follows the concept's released config
            if getattr(self, name) is None:
                setattr(self, name, getattr(defaults, name))
        for name, low in (
            ("tokens", 1), ("iterations", 1), ("timesteps", 1), ("target_steps", 1), ("population", 2),
            ("generations", 1), ("batch_size", 1), ("max_prompts", 1), ("p4d_every", 1), ("p4d_eval_every", 1),
            ("mma_candidates", 1), ("mma_topk", 1),
        ):  # fmt: skip
            value = getattr(self, name)
            if value is None and name == "max_prompts":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.method == "p4d" and self.p4d_variant == "k" and given_tokens:  # P4D-K's count is the prompt's
            raise ValueError("tokens: p4d_variant k puts one free token before every p4d_every prompt tokens")
        if self.method == "p4d" and self.p4d_variant == "n" and self._given(("p4d_every",)):
            raise ValueError("p4d_every: only p4d_variant k inserts tokens every K words")
        if self.distributor not in DISTRIBUTORS:
            raise ValueError(f"Unknown distributor {self.distributor!r}; valid: {', '.join(DISTRIBUTORS)}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {self.retries!r}")
        if self.timesteps > TRAIN_TIMESTEPS:
            raise ValueError(
                f"timesteps must be at most {TRAIN_TIMESTEPS} (the grid spans T = 1000), got {self.timesteps}"
            )
        for name in ("mutation_rate", "crossover_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        for name in ("lr", "weight_decay", "target_guidance", "eta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.projection not in PROJECTIONS:
            raise ValueError(f"Unknown projection {self.projection!r}; valid: {', '.join(PROJECTIONS)}")
        banned = self.mma_banned
        if banned is not None and (not isinstance(banned, list) or not all(isinstance(w, str) and w for w in banned)):
            raise ValueError(f"mma_banned must be a list of non-empty words, got {banned!r}")
        if not isinstance(self.mma_reference_rows, bool):
            raise ValueError(f"mma_reference_rows must be true or false, got {self.mma_reference_rows!r}")
        if (
            self._given(("mma_candidates", "mma_topk", "mma_banned", "mma_reference_rows"))
            and self.method != "mma_diffusion"
        ):
            raise ValueError("mma_candidates, mma_topk, mma_banned, mma_reference_rows: only mma_diffusion uses them")
        if self._given(("p4d_variant", "p4d_every", "p4d_eval_every", "p4d_clip")) and self.method != "p4d":
            raise ValueError("p4d_variant, p4d_every, p4d_eval_every, p4d_clip: only p4d uses them")
        if self.method == "mma_diffusion" and (self.original is not None or self.target_images is not None):
            raise ValueError("original, target_images: mma_diffusion matches text embeddings and renders no images")
        if self.method == "mma_diffusion" and foreign:
            raise ValueError(f"{', '.join(foreign)}: mma_diffusion does not use them (it substitutes tokens)")
        if self.judge is not None and self.method != "unlearndiffatk":
            raise ValueError("judge: only unlearndiffatk judges images at checkpoints of its attack")
        if self.judge is not None and not str(self.judge).strip():
            raise ValueError("judge: give a judge spec (e.g. nudenet), not an empty string")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Unknown schedule {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        if self.dtype is not None and self.dtype not in DTYPES:
            raise ValueError(f"Unknown dtype {self.dtype!r}; valid: {', '.join(DTYPES)}")
        if not _DEVICE.match(str(self.device)):
            raise ValueError(f"Unknown device {self.device!r}; valid: auto, cpu, cuda, cuda:N, mps")
        for name in ("prompts", "concept_prompts"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ValueError(f"{name}: {path!r} does not exist (or is not a file)")
        if self.target_images is not None and not Path(self.target_images).is_dir():
            raise ValueError(f"target_images: {self.target_images!r} does not exist (or is not a folder)")
        # p4d's original is also the model whose noise predictions it matches: there both have a use
        if self.target_images is not None and self.original is not None and self.method != "p4d":
            raise ValueError("Give target_images (given images) or original (a model to render them), not both")
        if self.concept not in self.registry():
            raise ValueError(f"Unknown concept {self.concept!r}; known concepts: {', '.join(self.registry().ids())}")

    def _given(self, names) -> list[str]:
        """The fields among ``names`` whose value is not their default: what the user set (read before the released
        defaults fill the unset ones)."""
        return [f.name for f in fields(self) if f.name in names and getattr(self, f.name) != f.default]

    def registry(self) -> ConceptRegistry:
        """Built-in concepts plus those in ``concepts_dir``."""
        return load_registry(split_dirs(self.concepts_dir))

    def outcome_options(self) -> dict:
        """The options that decide the attack's result (recorded in every prompt it makes)."""
        return {"method": self.method} | {name: getattr(self, name) for name in OUTCOME_FIELDS[self.method]}

    def to_dict(self) -> dict:
        return asdict(self)
