"""Full-size dry runs on the CPU: the published architectures with random weights, one step at native resolution.

What only breaks at real size (memory, attention over 4096 latent tokens at 1024 px, the VAE at 1024 px, dtype
paths) runs here without a GPU and without downloads. Each model of ``benchmarks/configs`` (SD-1.4, SDXL,
SD3-medium; FLUX.1-dev only from its parameter counts: it does not fit a 24 GiB machine) is saved as a pipeline
folder of randomly initialised components, then each measurement runs in a fresh subprocess (so peaks do not mix):

* ``generate``: one ``dataigm generate`` call with ``steps=1`` at batch 1 and 2: the pipeline loaded by
  ``generation.pipeline.load_pipeline`` (what the job's ``get_model`` calls), the call settings of
  ``generation.mapper.sampling_of`` and the call itself, ``generation.mapper.generate_batch`` (text encoders, one
  denoising step with classifier-free guidance, VAE decode).
* ``attack`` (SD-1.4): one UnlearnDiffAtk step, ``generation.attacks.unlearndiffatk.attack_batch`` with one
  iteration at one timestep (one forward and backward through the UNet and text encoder, then the three no-grad
  loss evaluations the attack ends with), on random target latents, batch 1 and 2.

Reported per measurement: wall time of the call, peak RSS of the process (``VmHWM``), the RSS once loaded, the peak
RSS within each phase (text encoders, denoiser, VAE decode; sampled every 20 ms with forward hooks marking the
phase), parameter bytes, and the estimated GPU memory (see ``estimate_gpu``).

Stand-ins: a CLIP BPE tokenizer needs vocabulary and merge files that are not available offline, so the CLIP
tokenizers are byte-level (``generation.tiny.write_byte_vocabulary``, ``model_max_length`` 77): the text encoders
keep the published vocabulary size, the token ids come from the first 514 rows. SD3's T5-XXL encoder is
stood in for by the same encoder at 1 of its 24 layers (full width and vocabulary, so the context keeps its 77 + 256
tokens of width 4096) with a character-level T5 tokenizer (``generation.tiny.build_t5_tokenizer``): on the CPU the
pipeline loads in fp32, where T5-XXL alone takes 19 GB; the 23 missing layers are added to the parameter bytes.
(A folder saved with ``text_encoder_3=None`` does not load through ``load_pipeline``: diffusers' ``from_pretrained``
refuses the missing component unless the call passes ``text_encoder_3=None``.)

    python benchmarks/fullsize.py --models sd14 sdxl sd3 --out docs/fullsize.jsonl   # builds, measures, appends
    python benchmarks/fullsize.py --table docs/fullsize.jsonl                         # the markdown table

Run one at a time on a quiet machine (``nice -n 10``); the load average is recorded beside each wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would hide the package.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

GIB = 2**30
PROMPTS = ["a photo of a church in the mountains", "an oil painting of a harbour at night"]
CUDA_CONTEXT_GIB = 0.75  # CUDA context and cuBLAS workspace on an H100 (not measured here: no GPU)


# ---------------------------------------------------------------- memory probes


def _status(field: str) -> int:
    """A ``/proc/self/status`` memory field in bytes (``VmRSS``, ``VmHWM``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


class PhaseSampler:
    """Peak RSS per phase, sampled every ``interval`` seconds in a thread; hooks set the phase."""

    def __init__(self, interval: float = 0.02):
        self.phase, self.peaks, self.interval = "other", {}, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = _status("VmRSS")
            self.peaks[self.phase] = max(self.peaks.get(self.phase, 0), rss)
            time.sleep(self.interval)

    def mark(self, module, phase: str) -> None:
        """Set the phase to ``phase`` whenever ``module``'s forward starts."""
        module.register_forward_pre_hook(lambda *_: setattr(self, "phase", phase))

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# ---------------------------------------------------------------- building the pipeline folder


def build_folder(model: str, folder: Path) -> Path:
    """Save ``model``'s published architecture with random weights (fp16 on disk) as a diffusers folder."""
    import diffusers
    import torch
    from transformers import CLIPTokenizer

    from benchmarks.configs import MODELS, build
    from generation.tiny import write_byte_vocabulary

    spec = MODELS[model]
    vocab, merges = write_byte_vocabulary(folder.parent / f".{folder.name}-tokenizer")
    parts: dict = {}
    for i, name in enumerate(("unet", "transformer", "vae", "text_encoder", "text_encoder_2")):
        if name in spec:
            torch.manual_seed(i)
            parts[name] = build(model, name, dtype=torch.float16).eval()
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=77)
    parts["tokenizer"] = tokenizer
    if "text_encoder_2" in spec:
        parts["tokenizer_2"] = tokenizer
    if model == "sd3":
        # T5-XXL at 1 of its 24 layers (full width, full vocabulary): see the module docstring
        from transformers import T5Config, T5EncoderModel

        from benchmarks.configs import T5_XXL
        from generation.tiny import build_t5_tokenizer

        torch.manual_seed(5)
        config = T5Config(**dict(T5_XXL, num_layers=1), pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
        parts.update(text_encoder_3=T5EncoderModel(config).half().eval(), tokenizer_3=build_t5_tokenizer())
    scheduler_class, scheduler_config = spec["scheduler"]
    parts["scheduler"] = getattr(diffusers, scheduler_class).from_config(scheduler_config)  # as from a config.json
    if model == "sd14":
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe = getattr(diffusers, spec["pipeline"])(**parts)
    pipe.save_pretrained(folder)
    return folder


# ---------------------------------------------------------------- one measurement (in its own process)


def parameter_bytes_half(model: str, loaded) -> tuple[int, int]:
    """(parameters of the loaded components, of those plus the ones left out), at 2 bytes each."""
    from benchmarks.configs import build, parameters

    counted = sum(parameters(m) for m in loaded)
    # SD3: the 23 T5-XXL layers the stand-in leaves out
    t5_loaded = [m for m in loaded if type(m).__name__ == "T5EncoderModel"]
    skipped = parameters(build("sd3", "text_encoder_3", "meta")) - parameters(t5_loaded[0]) if t5_loaded else 0
    return 2 * counted, 2 * (counted + skipped)


def measure(args) -> dict:
    """One measurement in this process: load the pipeline, run one call, report time and memory."""
    import torch

    from benchmarks.configs import MODELS
    from dataigm.prompts import PromptRecord
    from generation.config import JobConfig
    from generation.job import WorkItem
    from generation.mapper import generate_batch, sampling_of
    from generation.pipeline import load_pipeline
    from generation.spec import ModelSpec

    torch.set_num_threads(args.threads or torch.get_num_threads())
    res, batch = MODELS[args.model]["resolution"], args.batch
    # the job whose call settings the step uses (nothing is written: only sampling_of reads it)
    cfg = JobConfig(
        out=str(args.folder.parent / "unused"),
        models=[str(args.folder)],
        concepts=["church"],
        steps=1,
        height=res,
        width=res,
    )
    rss_start = _status("VmRSS")
    start = time.perf_counter()
    spec = ModelSpec(base=str(args.folder), name=f"fullsize-{args.model}", vae_tiling=bool(args.vae_tiling))
    model = load_pipeline(spec, "cpu")
    load_s = time.perf_counter() - start
    pipe = model.pipe
    modules = [
        getattr(pipe, n, None)
        for n in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3")
    ]
    modules = [m for m in modules if m is not None]
    rss_loaded = _status("VmRSS")
    sampler = PhaseSampler()
    for name in ("text_encoder", "text_encoder_2", "text_encoder_3"):
        if getattr(pipe, name, None) is not None:
            sampler.mark(getattr(pipe, name), "text")
    sampler.mark(pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer, "denoise")
    sampler.mark(pipe.vae.decoder, "decode")
    sampler.mark(pipe.vae.encoder, "encode")
    load_before = os.getloadavg()[0]
    if args.kind == "generate":
        records = [PromptRecord(f"p{i}", "church", "forget", PROMPTS[i % len(PROMPTS)]) for i in range(batch)]
        items = [WorkItem(r, 0, 1000 + i, "train") for i, r in enumerate(records)]
        settings = sampling_of(items[0], model, cfg)
        with sampler:
            start = time.perf_counter()
            images, _ = generate_batch(model, items, settings)
            wall = time.perf_counter() - start
        assert images.shape == (batch, res, res, 3), images.shape
        detail = {
            "steps": 1,
            "guidance": settings[1],
            "nan_images": int((~torch.isfinite(torch.from_numpy(images))).any(dim=(1, 2, 3)).sum()),
        }
    else:
        from generation.attacks.common import TextSide
        from generation.attacks.runner import _freeze
        from generation.attacks.unlearndiffatk import Options, attack_batch

        _freeze(pipe)  # as `dataigm attack` does: only the adversarial embeddings take gradients
        text = TextSide.of(pipe, "fullsize")
        unet = pipe.unet.config
        latents = torch.randn(
            (batch, unet.in_channels, unet.sample_size, unet.sample_size), generator=torch.Generator().manual_seed(0)
        )
        options = Options(tokens=5, iterations=1, timesteps=1)
        with sampler:
            start = time.perf_counter()
            results = attack_batch(
                pipe, text, [PROMPTS[i % len(PROMPTS)] for i in range(batch)], list(range(batch)), latents, options
            )
            wall = time.perf_counter() - start
        detail = {"tokens": 5, "iterations": 1, "timesteps": 1, "loss": [round(r.loss, 4) for r in results]}
    half, half_all = parameter_bytes_half(args.model, modules)
    return {
        "model": args.model,
        "kind": args.kind,
        "resolution": res,
        "batch": batch,
        "wall_s": round(wall, 1),
        "load_s": round(load_s, 1),
        "loadavg_before": round(load_before, 2),
        "loadavg_after": round(os.getloadavg()[0], 2),
        "threads": torch.get_num_threads(),
        "rss_start": rss_start,
        "rss_loaded": rss_loaded,
        "peak_rss": _status("VmHWM"),
        "peak_virtual": _status("VmPeak"),
        "phase_peaks": sampler.peaks,
        "param_bytes_fp32_loaded": 2 * half,
        "param_bytes_half": half_all,
        "sd3_without_t5": args.model == "sd3",
        "dtype_cpu": str(next(iter(modules[0].parameters())).dtype),
        "torch": torch.__version__,
        "detail": detail,
        "runs": 1,
        "vae_tiling": bool(args.vae_tiling),
    }


# ---------------------------------------------------------------- the GPU estimate


def estimate_gpu(row: dict) -> float:
    """GiB a CUDA run in the family's half precision needs: parameters + activations + context.

    Parameters: every component at 2 bytes (bf16/fp16, as ``dataigm generate`` runs on a GPU; for SD3 the T5-XXL
    encoder the CPU run left out is included). Activations: the largest growth of RSS over the loaded state within a
    phase (text, denoise, decode), halved for half precision, except SDXL's VAE decode, which diffusers upcasts to
    fp32 (``force_upcast``: its VAE parameters then count 4 bytes too). An UnlearnDiffAtk step keeps the UNet's
    activations for the backward pass in the same way. Plus ``CUDA_CONTEXT_GIB``.
    """
    base = row["rss_loaded"]
    params = row["param_bytes_half"]
    need = 0.0
    for phase, peak in row["phase_peaks"].items():
        activations = max(0, peak - base)
        upcast = row["model"] == "sdxl" and phase == "decode"
        phase_need = params + (activations if upcast else activations / 2) + (2 * 83_653_863 if upcast else 0)
        need = max(need, phase_need)
    return need / GIB + CUDA_CONTEXT_GIB


# ---------------------------------------------------------------- Flux: from parameter counts


def flux_row() -> dict:
    """FLUX.1-dev's memory from its parameter counts (meta device): it does not fit this machine at any dtype."""
    from benchmarks.configs import build, parameters

    counts = {
        name: parameters(build("flux", name, "meta"))
        for name in ("transformer", "vae", "text_encoder", "text_encoder_2")
    }
    return {"model": "flux", "kind": "parameters only", "counts": counts, "total": sum(counts.values())}


# ---------------------------------------------------------------- the table


def table(rows: list[dict]) -> str:
    from dataigm.markdown import table as md_table

    out = []
    for r in rows:
        if r["kind"] == "parameters only":
            continue
        if "error" in r:
            why = f"not measured: {r['error']} (cap {r['mem_limit_gib']} GiB)"
            out.append([r["model"], r["kind"], "", r["batch"], why, "", "", "", "", "", ""])
            continue
        phases = ", ".join(
            f"{k} {(v - r['rss_loaded']) / GIB:+.1f}" for k, v in sorted(r["phase_peaks"].items()) if k != "other"
        )
        out.append([
            r["model"], r["kind"], f"{r['resolution']} px", r["batch"], f"{r['wall_s']:.0f}", f"{r['loadavg_before']:.1f}/{r['loadavg_after']:.1f}",
            f"{r['peak_rss'] / GIB:.1f}", f"{r['rss_loaded'] / GIB:.1f}", phases, f"{r['param_bytes_half'] / GIB:.2f}", f"{estimate_gpu(r):.1f}",
        ])  # fmt: skip
    header = [
        "model", "call", "resolution", "batch", "wall s (1 run)", "load avg before/after", "peak RSS GiB",
        "loaded RSS GiB", "activation peak per phase GiB (fp32, CPU)", "params GiB (half)", "est. GPU GiB (half)",
    ]  # fmt: skip
    return md_table(header, out)


# ---------------------------------------------------------------- driver


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="*", default=["sd14", "sdxl", "sd3"], choices=["sd14", "sdxl", "sd3", "flux"]
    )
    parser.add_argument("--batches", nargs="*", type=int, default=[1, 2])
    parser.add_argument(
        "--out", type=Path, default=Path("fullsize.jsonl"), help="results, one JSON line each (appended)"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="where pipeline folders go (default: a temporary folder)"
    )
    parser.add_argument(
        "--kinds",
        nargs="*",
        default=["generate", "attack"],
        choices=["generate", "attack"],
        help="attack: SD-1.4 only",
    )
    parser.add_argument(
        "--mem-limit-gib", type=float, default=21.0, help="address-space cap of each measurement (a shared machine)"
    )
    parser.add_argument("--table", type=Path, default=None, help="print the markdown table of a results file and exit")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--vae-tiling", action="store_true", help="the spec's vae_tiling: decode in tiles")
    # internal: one measurement in this process
    parser.add_argument("--measure", choices=["generate", "attack"], default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.table is not None:
        print(table([json.loads(line) for line in args.table.read_text().splitlines() if line.strip()]))
        return
    if args.measure is not None:
        args.kind = args.measure
        print(json.dumps(measure(args)), flush=True)
        return
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)  # --work keeps the folders, and a later run reuses them
        for model in args.models:
            if model == "flux":
                _append(args.out, flux_row())
                continue
            folder = work / model
            if not (folder / "model_index.json").exists():
                start = time.perf_counter()
                _child(["--build", model, str(folder)])
                print(f"{model}: built in {time.perf_counter() - start:.0f} s", flush=True)
            kinds = [k for k in args.kinds if k == "generate" or model == "sd14"]
            for kind in kinds:
                for batch in args.batches:
                    row = _measure_in_child(model, kind, batch, folder, args)
                    _append(args.out, row)
                    print(f"{model} {kind} batch {batch}: {row.get('wall_s')} s, {row.get('error', 'ok')}", flush=True)


def _measure_in_child(model: str, kind: str, batch: int, folder: Path, args) -> dict:
    """One measurement in a fresh process under an address-space cap: its row, or the reason it has none."""
    import resource

    cap = int(args.mem_limit_gib * GIB)
    command = [sys.executable, __file__, "--measure", kind, "--model", model, "--batch", str(batch)]
    command += ["--folder", str(folder)] + (["--threads", str(args.threads)] if args.threads else [])
    command += ["--vae-tiling"] if args.vae_tiling else []
    limit = lambda: resource.setrlimit(resource.RLIMIT_AS, (cap, cap))  # noqa: E731
    done = subprocess.run(command, capture_output=True, text=True, preexec_fn=limit)
    if done.returncode == 0:
        return json.loads(done.stdout.strip().splitlines()[-1])
    tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:] or [f"exit {done.returncode}"]
    return {"model": model, "kind": kind, "batch": batch, "error": tail[0][:300], "mem_limit_gib": args.mem_limit_gib}


def _child(arguments: list[str]) -> str:
    """Run this script with ``arguments`` in a fresh process; its stdout."""
    done = subprocess.run([sys.executable, __file__, *arguments], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(arguments)} failed:\n{done.stderr[-4000:]}")
    return done.stdout


def _append(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--build":
        build_folder(sys.argv[2], Path(sys.argv[3]))
    else:
        main()
