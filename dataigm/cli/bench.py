"""``dataigm bench list|show|import|run|board|push``: the packaged benchmark suites (:mod:`dataigm.suite`) and their
results.

This command lists suites, shows one (human or ``--json``), imports a prompt file a suite pins but does not bundle,
checked against its pin, runs a suite through the evaluation (:mod:`detectors.bench.run`), makes a board of results
files (:mod:`detectors.bench.board`) and pushes them to the Hub (:mod:`detectors.bench.push`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..suite import check_pin, list_suites, load_suite, suite_summary
from .common import command_parser
from .options import add_options

# the distributor options, passed to the evaluation as they are
DISTRIBUTION = ("distributor", "num_workers", "worker_index", "ray_address", "num_gpus", "retries")
# the NAME=PATH options of bench run, each given once per file
REPEATED = {
    "prompt_file": "a file of a prompt set the suite does not bundle, as SET=PATH (checked against the pin); repeat",
    "judge_file": "a file the suite's judges name as {placeholder}, as NAME=PATH (checked against the pin); repeat",
    "reference_images": "a folder of reference images for FID, as SET=DIR (the suite's reference prompt set, e.g. "
    "coco-10k; image files only, no links); repeat",
}
HELP = "benchmark suites: list them, show one, import a prompt file a suite pins, run one; board and push results"


@dataclass
class ShowOptions:
    """``dataigm bench show``.

    Attributes:
        suite: SUITE[@VERSION] (the latest version when none is given) or a suite YAML file
        json: print the suite as JSON (its identity, definition and what each bundled prompt file holds)
    """

    suite: str
    json: bool = False


@dataclass(kw_only=True)
class ImportOptions:
    """``dataigm bench import``.

    Attributes:
        suite: SUITE[@VERSION] (the latest version when none is given) or a suite YAML file
        prompt_set: the name of the suite's prompt set the file is
        file: the prompt file, fetched from the source the suite names
        out: folder the checked file is copied to, under the source's file name
    """

    suite: str
    prompt_set: str
    file: str
    out: str


@dataclass(kw_only=True)
class RunOptions:
    """``dataigm bench run``.

    Attributes:
        suite: SUITE[@VERSION] (the latest version when none is given) or a suite YAML file
        model: model specs to evaluate (Hub id, pipeline folder, spec YAML file); one results file each
        out: folder of the results files (evaluation/ below it holds the prompts, images and cache: a re-run
            resumes there)
        images: a dataset root of images generated elsewhere, scored instead of generating (marked images supplied)
        prompt_file: files of prompt sets the suite does not bundle, as SET=PATH (checked against the pin)
        judge_file: files the suite's judges name as {placeholder}, as NAME=PATH (checked against the pin)
        reference_images: folders of reference images for FID, as SET=DIR (SET: the suite's reference prompt set,
            e.g. coco-10k; image files only, no links; see docs/bench.md)
        fid_weights: local file of the FID Inception weights (offline; the results record the weights' digest)
        device: auto, cpu, cuda, cuda:N or mps
        nonstandard: accept the options below, which change what the suite measures; every results file lists them
        steps: sampling steps instead of the suite's (nonstandard)
        base_seed: added to every prompt's seed (nonstandard)
        scheduler: sampling scheduler instead of the suite's (nonstandard)
        size: image side in pixels instead of the suite's (nonstandard)
        dtype: sampling dtype instead of the suite's (nonstandard)
        images_per_prompt: images per prompt instead of the suite's (nonstandard)
        max_prompts: at most this many prompts per concept, a subset (nonstandard)
        judge: one judge spec for every concept instead of the suite's (nonstandard)
        attack_options: attack options by method as JSON, e.g. '{"unlearndiffatk": {"iterations": 5}}' (nonstandard)
        fid_feature: FID backbone instead of the suite's Inception: a timm name, random:NAME for random weights
            (nonstandard)
        clip_model: CLIP model of the CLIP score instead of the suite's, Hub id or folder (nonstandard)
        distributor: local or ray: who runs the attacks' prompt batches and the generation's shards (as in
            `dataigm evaluate`; no number depends on it)
        num_workers: with worker_index: this process is one of num_workers (a SLURM array, torchrun); the workers
            run again until their images are done, then a run without them judges and writes the results
        worker_index: this worker's index in the partition
        ray_address: address of an existing Ray cluster (default: start a local one)
        num_gpus: GPUs per Ray task (default: 1 when CUDA is available, else 0)
        retries: extra attempts of a failed task before it is named as failed
    """

    suite: str
    model: list[str] = field(default_factory=list)
    out: str
    images: str | None = None
    prompt_file: list[str] = field(default_factory=list)
    judge_file: list[str] = field(default_factory=list)
    reference_images: list[str] = field(default_factory=list)
    fid_weights: str | None = None
    device: str = "auto"
    nonstandard: bool = False
    steps: int | None = None
    base_seed: int | None = None
    scheduler: str | None = None
    size: int | None = None
    dtype: str | None = None
    images_per_prompt: int | None = None
    max_prompts: int | None = None
    judge: str | None = None
    attack_options: str | None = None
    fid_feature: str | None = None
    clip_model: str | None = None
    distributor: str = "local"
    num_workers: int | None = None
    worker_index: int | None = None
    ray_address: str | None = None
    num_gpus: float | None = None
    retries: int = 2


@dataclass(kw_only=True)
class BoardOptions:
    """``dataigm bench board``.

    Attributes:
        results: results files of one suite version (mixed versions are refused)
        out: folder board.md and board.html are written to
        suite: the suite YAML file when the results are of a suite that is not packaged
        reported: show the published numbers of the suite as reported rows
        n_boot: paired bootstrap resamples of the prompts (rank intervals, differences)
        seed: seed of the resampling
    """

    results: list[str]
    out: str
    suite: str | None = None
    reported: bool = True
    n_boot: int = 1000
    seed: int = 0


@dataclass(kw_only=True)
class PushOptions:
    """``dataigm bench push``.

    Attributes:
        results: results files to publish (each verified against its checksum first)
        repo: Hub dataset repository ORG/NAME the results go to (created when missing)
        create_pr: open a pull request on the dataset repository instead of committing to main
        model_results: also open a pull request with the evaluation results on each model repository on the Hub
        private: create the dataset repository private
        commit_message: commit message
    """

    results: list[str]
    repo: str
    create_pr: bool = True
    model_results: bool = True
    private: bool = False
    commit_message: str = "Add dataigm benchmark results"


def configure(parser) -> None:
    sub = parser.add_subcommands(dest="action")
    sub.add_subcommand("list", command_parser("list the packaged suites"), help="list the packaged suites")
    show = command_parser("print one suite: settings, prompt sets with their pins, judges, metrics, composite")
    sub.add_subcommand("show", show, help="print one suite (human or --json)")
    add_options(show, ShowOptions, positional=("suite",))
    imp = command_parser("check a prompt file against the suite's pin, then copy it to --out")
    sub.add_subcommand("import", imp, help="import a prompt file a suite pins but does not bundle")
    add_options(imp, ImportOptions, positional=("suite", "prompt_set", "file"))
    bench_run = command_parser("run a suite through the evaluation with its settings: one results file per model")
    sub.add_subcommand("run", bench_run, help="run a suite on models (or supplied images): results files")
    add_options(bench_run, RunOptions, positional=("suite",), skip=("model", *REPEATED))
    # --model SPEC [--model SPEC ...]: repeated, as a list option would read a YAML spec file as the list itself
    bench_run.add_argument(
        "--model", action="append", type=str, default=[],
        help="a model spec to evaluate (Hub id, pipeline folder, spec YAML file); repeat for more; one results file each",
    )  # fmt: skip
    for name, help_text in REPEATED.items():  # NAME=PATH, repeated (a list option would want a JSON list)
        bench_run.add_argument("--" + name.replace("_", "-"), action="append", type=str, default=[], help=help_text)
    board = command_parser("results of one suite version as board.md and a static board.html (paired ranks)")
    sub.add_subcommand("board", board, help="make a leaderboard of results files: markdown and one static page")
    add_options(board, BoardOptions, positional=("results",))
    push = command_parser("results files to a Hub dataset, and to each Hub model's evaluation results (pull requests)")
    sub.add_subcommand("push", push, help="publish results files to the Hub (pull requests by default)")
    add_options(push, PushOptions, positional=("results",))


def format_list(suites) -> str:
    lines = []
    for suite in suites:
        concepts = ", ".join(c["id"] for c in suite.data["concepts"])
        lines.append(f"{suite.id:<32} {suite.sha256[:12]}  {concepts}")
        lines.append(f"    {suite.data['description'].split('. ')[0].strip().rstrip('.')}.")
    return "\n".join(lines)


def format_suite(summary: dict) -> str:
    """The human rendering of ``suite_summary``: one screen, every setting that makes results comparable."""
    s = summary
    out = [f"{s['suite']['id']}  sha256 {s['suite']['sha256']}", s["description"].strip()]
    if "source" in s:
        out.append(f"source: {s['source']['address']} @ {s['source'].get('commit', '-')}")
    out.append(f"base model: {s['base_model']['label']} ({s['base_model']['spec']})")
    out.append("concepts: " + ", ".join(f"{c['id']} ({c['category']})" for c in s["concepts"]))
    sampling = s["sampling"]
    out.append(
        "sampling: "
        + ", ".join(
            f"{k} {sampling[k]}"
            for k in ("scheduler", "steps", "size", "guidance", "images_per_prompt", "dtype", "base_seed")
            if k in sampling
        )
    )
    if "origin" in sampling:
        out.append(f"  ({sampling['origin']})")
    out.append("prompt sets:")
    for p in s["prompt_sets"]:
        where = f"bundled {p['file']}" if p["bundled"] else f"import {p['file_name']} (`dataigm bench import`)"
        columns = ", ".join(f"{k.split('_')[0]} column {p[k]}" for k in ("seed_column", "guidance_column") if p.get(k))
        out.append(f"  {p['name']}: {p['kind']}, {p['rows']} prompts, {p['format']}, {where}")
        out.append(f"    sha256 {p['sha256']}; licence {p['licence']}" + (f"; {columns}" if columns else ""))
        source = p["source"]
        commit = f" @ {source['commit']}" if "commit" in source else ""
        path = f", {source['path']}" if "path" in source else ""
        out.append(f"    from {source['address']}{commit}{path}")
    out.append("judges:")
    for concept, judge in s["judges"].items():
        if judge["spec"] is None:
            out.append(f"  {concept}: not available: {judge['unavailable'].strip()}")
        else:
            exact = "" if judge.get("exact", True) else " (not the source's exact judge: see source_judge)"
            out.append(f"  {concept}: {judge['spec']}, threshold {judge['threshold']}{exact}")
            for name, pin in (judge.get("files") or {}).items():
                digest = f"sha256 {pin['sha256']}" if "sha256" in pin else f"git blob {pin['git_blob']}"
                out.append(f"    {{{name}}}: {pin['source'].get('path', pin['source']['address'])}, {digest}")
            if judge.get("unpinned"):
                out.append(f"    unpinned: {judge['unpinned'].strip()}")
        out.append(f"    decision: {judge['decision'].strip()}")
    if s.get("metrics"):
        out.append("metrics: " + ", ".join(s["metrics"]))
    for attack in s.get("attacks") or []:
        options = ", ".join(f"{k}={v}" for k, v in (attack.get("options") or {}).items())
        out.append(f"attack: {attack['method']} on {attack['prompt_set']} ({options})")
    composite = s["composite"]
    terms = ", ".join(f"{t['weight']} x {t['metric']} ({t['better']} is better)" for t in composite["terms"])
    out.append(f"composite (normalised to {composite['base']}): {terms}")
    return "\n".join(out)


def run(cfg) -> int:
    action = cfg.action
    if action == "list":
        print(format_list(list_suites()))
        return 0
    args = cfg[action]
    if action == "show":
        summary = suite_summary(load_suite(args.suite))
        print(json.dumps(summary, indent=2, ensure_ascii=False) if args.json else format_suite(summary))
        return 0
    if action == "run":
        return run_suite(args)
    if action == "board":
        from detectors.bench.board import write_board

        if args.n_boot < 1:
            raise ValueError(f"--n-boot must be at least 1, got {args.n_boot}")
        md, html = write_board(
            list(args.results),
            args.out,
            suite_ref=args.suite,
            reported=args.reported,
            n_boot=args.n_boot,
            seed=args.seed,
        )
        print(f"board of {len(args.results)} results file(s): {md} and {html}")
        return 0
    if action == "push":
        from detectors.bench.push import push_results

        for where, url in push_results(
            list(args.results),
            args.repo,
            create_pr=args.create_pr,
            model_results=args.model_results,
            private=args.private,
            commit_message=args.commit_message,
        ):
            print(f"pushed to {where}: {url}")
        return 0
    suite = load_suite(args.suite)
    prompt_set = suite.prompt_set(args.prompt_set)
    # checked before anything is written: a file that does not match its pin leaves no trace
    check_pin(args.file, prompt_set.sha256, f"suite {suite.id}, prompt set {prompt_set.name!r}")
    out = Path(args.out) / prompt_set.file_name
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.file, out)
    check_pin(out, prompt_set.sha256, f"the copy in {args.out}")  # the copy is what a run will read
    print(
        f"{args.file} matches {suite.id} prompt set {prompt_set.name!r} (sha256 {prompt_set.sha256[:12]}); copied to {out}"
    )
    return 0


def run_suite(args) -> int:
    """``bench run``: check everything (suite, pins, options, model specs), then run and write the results files."""
    from detectors.bench.run import COMPARABILITY, prepare, run_bench
    from detectors.evaluation.flow import WorkerDone

    overrides = {name: getattr(args, name) for name in COMPARABILITY}
    if overrides["attack_options"] is not None:
        try:
            overrides["attack_options"] = json.loads(overrides["attack_options"])
        except ValueError:
            raise ValueError(f"--attack-options is not JSON: {overrides['attack_options']!r}") from None
        if not isinstance(overrides["attack_options"], dict):
            raise ValueError("--attack-options is a JSON object {METHOD: {OPTION: VALUE}}")
    run = prepare(
        load_suite(args.suite), list(args.model), args.out, overrides=overrides, nonstandard=args.nonstandard,
        images=args.images, prompt_files=_named(args.prompt_file, "--prompt-file", "SET"),
        judge_files=_named(args.judge_file, "--judge-file", "NAME"), device=args.device,
        reference_images=_named(args.reference_images, "--reference-images", "SET"), fid_weights=args.fid_weights,
        distribution={name: getattr(args, name) for name in DISTRIBUTION},
    )  # fmt: skip
    try:
        written = run_bench(run)
    except WorkerDone as done:  # a worker of a partition: its share is done, the results come later
        print(done)
        return 0
    for path in written:
        print(path)
    return 0


def _named(items, option: str, what: str) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{option} {item!r}: give {what}=PATH")
        out[name] = path
    return out
