"""``dataigm judge agree``: kappa and agreement of judges against an independent computation, the review queue,
NaN judgements excluded and counted, the plot and card, and bad input refused before anything is written."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers.data import METHODS, make_sample, write_test_root
from PIL import Image

from dataigm import ShardId, write_shard
from dataigm.cli import main
from dataigm.reader import iter_samples
from detectors.judges import JUDGE_REGISTRY, Judge, load_judge, register_judge
from detectors.judges.options import Option, parse_options, resolve_options, split_spec

KIND = "channel-test"
OPTIONS = (
    Option("channel", int, 0, "RGB channel whose mean is the probability"),
    Option("concept", str, "church", "concept judged"),
    Option("nan_below", float, -1.0, "NaN probability where the channel mean is below this"),
)


class ChannelJudge(Judge):
    """A real judge: the probability of its concept is the mean of one colour channel, threshold 0.5."""

    kind = KIND

    def __init__(self, spec: str):
        options = resolve_options(KIND, parse_options(split_spec(spec)[1]), OPTIONS)
        super().__init__([options["concept"]], {options["concept"]: 0.5}, spec=spec)
        self.channel, self.nan_below = options["channel"], options["nan_below"]
        self.image_transform = self.channel_mean

    def channel_mean(self, image: Image.Image) -> float:
        return float(np.asarray(image, dtype=np.float64)[..., self.channel].mean() / 255)

    def forward(self, batch):
        p = np.array(batch, dtype=np.float64)[:, None]
        return np.where(p < self.nan_below, np.nan, p), None


@pytest.fixture(autouse=True)
def channel_kind():
    register_judge(KIND, help="test judge: one channel's mean", example=f"{KIND}:channel=0")(
        lambda spec, device=None: ChannelJudge(spec)
    )
    yield
    JUDGE_REGISTRY.pop(KIND, None)


@pytest.fixture
def root(tmp_path) -> Path:
    # make_sample colours: red = 37 i mod 256, green = 91 i mod 256, blue = 128 for targets and 0 for pairs
    root = write_test_root(tmp_path / "root", {("church", "test", "real"): [10, 6], ("church", "train", "real"): [4]})
    generated = [
        make_sample("church", "test", "generated", 100 + i, ("target", "pair")[i % 2], method=METHODS[i % 3])
        for i in range(12)
    ]
    write_shard(root, ShardId("church", "test", "generated", 0), generated, job_id="test")
    return root


def channel_means(root: Path, split: str = "test") -> dict[str, tuple[np.ndarray, int, str]]:
    """``{shard#key: (channel means, cls, source)}`` decoded here from the shards, independently of the index."""
    out = {}
    for sample in iter_samples(root, split=split):
        pixels = np.asarray(Image.open(io.BytesIO(sample.image)).convert("RGB"), dtype=np.float64)
        shard = f"data/{sample.record['concept']}/{split}/{sample.record['source']}"
        out[(shard, sample.key)] = (pixels.mean(axis=(0, 1)) / 255, sample.cls, sample.record["source"])
    return out


def hand_kappa(a: np.ndarray, b: np.ndarray) -> float:
    observed = (a == b).mean()
    expected = a.mean() * b.mean() + (1 - a.mean()) * (1 - b.mean())
    return (observed - expected) / (1 - expected)


def run_agree(root: Path, out: Path, *judges: str) -> int:
    return main(["judge", "agree", "--judges", *judges, "--data", str(root), "--out", str(out), "--bootstrap", "200"])


def test_kappa_and_agreement_equal_a_hand_computation_overall_and_per_source(root, tmp_path, capsys):
    red, green = f"{KIND}:channel=0", f"{KIND}:channel=1"
    assert run_agree(root, tmp_path / "out", red, green) == 0
    report = json.loads((tmp_path / "out" / "agreement.json").read_text())
    truth = channel_means(root)
    means = np.array([m for m, _, _ in truth.values()])
    labels = np.array([c for _, c, _ in truth.values()])
    sources = np.array([s for _, _, s in truth.values()])
    truth_methods = {(s.record["source"], s.key): s.record["method"] for s in iter_samples(root, split="test")}
    truth_methods = {k: truth_methods[(k[0].rsplit("/", 1)[1], k[1])] or "none" for k in truth}
    decided = {red: (means[:, 0] >= 0.5).astype(int), green: (means[:, 1] >= 0.5).astype(int), "labels": labels}
    assert report["images"] == len(truth) == 28
    rows = {(r["source"], r["method"], r["a"], r["b"]): r for r in report["rows"]}
    for source in ("all", "real", "generated"):
        keep = np.ones(len(labels), bool) if source == "all" else sources == source
        for a, b in ((red, green), (red, "labels"), (green, "labels")):
            row = rows[(source, "all", a, b)]
            x, y = decided[a][keep], decided[b][keep]
            assert row["n"] == keep.sum() and row["excluded"] == 0
            assert row["agreement"]["value"] == pytest.approx((x == y).mean())
            assert row["kappa"]["value"] == pytest.approx(hand_kappa(x, y))
            # 28 images: fewer than an interval of kappa needs to cover, so none is given, with the reason
            assert row["kappa"]["ci"] == [None, None] and "too few images" in row["kappa"]["ci_skipped"]
            low, high = row["agreement"]["ci"]
            assert low <= row["agreement"]["value"] <= high
    # generated images have methods: one row per method, and per source x method
    methods = np.array([truth_methods.get(k, "none") for k in truth])
    for method in ("ORG", "ESD", "FMN"):
        keep = methods == method
        row = rows[("all", method, red, green)]
        assert row["n"] == keep.sum() == 4
        assert row["kappa"]["value"] == pytest.approx(hand_kappa(decided[red][keep], decided[green][keep]))
    # a source x method cell holding the same images as a coarser row is not repeated
    assert ("generated", "ESD", red, green) not in rows and ("real", "none", red, green) not in rows
    # the review queue: the judges disagree, or both agree against the label
    queue = [json.loads(line) for line in (tmp_path / "out" / "queue.jsonl").read_text().splitlines()]
    expected = {}
    for i, (_shard, key) in enumerate(truth):
        r, g = decided[red][i], decided[green][i]
        if r != g:
            expected[key] = "judges_disagree"
        elif r != labels[i]:
            expected[key] = "judges_agree_against_label"
    assert {q["key"]: q["reason"] for q in queue} == expected
    assert 0 < len(expected) < len(truth)
    first = queue[0]
    assert first["shard"].startswith("data/church/test/") and set(first["judges"]) == {red, green}
    mean = truth[(first["shard"].rsplit("-", 1)[0], first["key"])][0]
    assert first["judges"][red]["probability"] == pytest.approx(mean[0])
    # the review page reads it: every queued image found in the root, with its record
    from dataigm.review import load_queue

    items = load_queue(root, tmp_path / "out" / "queue.jsonl")
    assert [(i.key, i.cls, i.judges) for i in items] == [(q["key"], q["label"], q["judges"]) for q in queue]
    # plot and card
    with Image.open(tmp_path / "out" / "agreement_church.png") as plot:
        assert plot.size[0] > 200
    card = (tmp_path / "out" / "agreement.md").read_text()
    overall = rows[("all", "all", red, green)]
    assert f"{overall['kappa']['value']:.3f}" in card and "agreement_church.png" in card
    assert f"{len(queue)} image(s) in the review queue" in card
    assert "review queue:" in capsys.readouterr().out


def test_nan_judgements_are_left_out_of_their_pairs_and_counted(root, tmp_path):
    red, nanny = f"{KIND}:channel=0", f"{KIND}:channel=1,nan_below=0.3"
    assert run_agree(root, tmp_path / "out", red, nanny) == 0
    report = json.loads((tmp_path / "out" / "agreement.json").read_text())
    means = np.array([m for m, _, _ in channel_means(root).values()])
    nan = means[:, 1] < 0.3
    assert nan.any() and report["excluded_nan"] == {nanny: {"church": int(nan.sum())}, red: {"church": 0}}
    row = next(r for r in report["rows"] if r["source"] == "all" and r["method"] == "all" and r["b"] == nanny)
    assert row["n"] == int((~nan).sum()) and row["excluded"] == int(nan.sum())
    x, y = (means[~nan, 0] >= 0.5).astype(int), (means[~nan, 1] >= 0.5).astype(int)
    assert row["kappa"]["value"] == pytest.approx(hand_kappa(x, y))
    # a NaN judgement is no verdict: never "absent" in the queue
    queue = [json.loads(line) for line in (tmp_path / "out" / "queue.jsonl").read_text().splitlines()]
    for record in queue:
        verdict = record["judges"][nanny]
        assert (verdict["probability"] is None) == (verdict["present"] is None)


def test_library_call_matches_the_cli_and_skips_no_image(root):
    from detectors.audit.agree import judge_agreement

    judges = {s: load_judge(s) for s in (f"{KIND}:channel=0", f"{KIND}:channel=2")}
    agreement = judge_agreement(judges, root, n_boot=0)
    # the blue judge reads the labels exactly: kappa 1 against them, no interval without resamples
    row = next(r for r in agreement.report["rows"] if r["a"] == f"{KIND}:channel=2" and r["b"] == "labels")
    assert row["kappa"]["value"] == pytest.approx(1.0) and row["kappa"]["ci"] == [None, None]
    assert row["kappa"]["ci_skipped"] == "skipped: no bootstrap resamples asked for"
    assert len(agreement.entries) == 28


@pytest.mark.parametrize(
    ("judges", "message"),
    [
        (["nope:x=1", f"{KIND}:channel=0"], "Unknown judge kind 'nope'"),
        ([f"{KIND}:channel=0"], "at least two judges"),
        ([f"{KIND}:channel=0", f"{KIND}:channel=0"], "given more than once"),
        ([f"{KIND}:channel=0", f"{KIND}:colour=1"], "Unknown option(s) ['colour']"),
    ],
)
def test_bad_judges_are_refused_in_one_line_and_nothing_is_written(root, tmp_path, capsys, judges, message):
    out = tmp_path / "out"
    assert run_agree(root, out, *judges) == 2
    err = capsys.readouterr().err
    assert err.startswith("dataigm judge agree: error:") and message in err and err.count("\n") == 1
    if "kind" in message:
        assert "clip-zeroshot" in err and KIND in err  # the known kinds are listed
    assert not out.exists()


def test_a_split_without_images_is_refused(root, tmp_path, capsys):
    code = main(
        ["judge", "agree", "--judges", f"{KIND}:channel=0", f"{KIND}:channel=1", "--data", str(root)]
        + ["--out", str(tmp_path / "out"), "--split", "val"]
    )
    assert code == 2 and "Split 'val'" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_baseline_judge_is_read_through_the_index_like_judge_eval(root, tmp_path, tiny_clip):
    """A real CLIP zero-shot judge (tiny, random weights) next to the channel judge: its probabilities in the queue,
    read through the shard index and its DataLoader, are what it gives on the same images decoded here."""
    clip = f"clip-zeroshot:model={tiny_clip},target=church,anchor=a field,concept=church,threshold=0.5"
    red = f"{KIND}:channel=0"
    assert run_agree(root, tmp_path / "out", clip, red) == 0
    queue = [json.loads(line) for line in (tmp_path / "out" / "queue.jsonl").read_text().splitlines()]
    assert queue
    samples = {s.key: s for s in iter_samples(root, split="test")}
    images = [Image.open(io.BytesIO(samples[q["key"]].image)).convert("RGB") for q in queue]
    direct = load_judge(clip, device="cpu").predict(images).probability("church")
    assert [q["judges"][clip]["probability"] for q in queue] == pytest.approx(direct.tolist(), abs=1e-5)


def test_pair_agreement_gives_the_kappa_interval_with_its_undefined_resamples():
    from sklearn.metrics import cohen_kappa_score

    from detectors.audit.agree import pair_agreement

    rng = np.random.default_rng(4)
    a = (rng.random(120) < 0.3).astype(int)
    b = np.where(rng.random(120) < 0.8, a, (rng.random(120) < 0.3).astype(int))
    b[:3] = -1  # not judged by b: left out
    row = pair_agreement(a, b, n_boot=500)
    kept = b >= 0
    assert row["n"] == 117 and row["excluded"] == 3
    assert row["kappa"]["value"] == pytest.approx(cohen_kappa_score(a[kept], b[kept]))
    low, high = row["kappa"]["ci"]
    assert low < row["kappa"]["value"] < high and row["kappa"]["undefined_resamples"] == 0
    assert "BCa" in row["kappa"]["ci_rule"] and "Wilson" in row["kappa"]["ci_rule"]


def test_the_agreement_card_says_why_a_kappa_has_no_interval_and_counts_undefined_resamples():
    from cards.agreement_card import _kappa

    skipped = {"value": 0.5, "ci": [None, None], "ci_skipped": "skipped: too few images (n < 50)"}
    assert _kappa(skipped) == "0.500 (interval skipped: too few images (n < 50))"
    given = {"value": 0.5, "ci": [0.3, 0.7], "undefined_resamples": 4}
    assert _kappa(given).endswith("(4 undefined resamples)") and "0.300" in _kappa(given)
