"""The VLM and Q16 judges: a tiny random LLaVA and a tiny CLIP built from configs offline, judged through
``dataigm judge eval`` on shards written by our writer and checked against an independent computation."""

from __future__ import annotations

import csv
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.data import write_color_root
from PIL import Image

from dataigm.cli import main
from detectors.data import build_index, decode_image
from detectors.judges import load_judge
from detectors.judges.q16 import read_q16_prompts
from detectors.judges.vlm import concept_question, with_article

# a word-level vocabulary: the chat template's markers, the answers and the words of the questions
WORDS = [
    "<unk>", "<pad>", "<s>", "</s>", "<image>", "USER:", "ASSISTANT:", "yes", "no", "Yes", "No",
    "Does", "this", "image", "show", "church?", "Answer", "with", "or", "no.", "Is", "there", "a", "tower?",
]  # fmt: skip
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'].upper() }}: {% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image> {% else %}{{ c['text'] }} {% endif %}{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
YES_IDS, NO_IDS = [WORDS.index("yes"), WORDS.index("Yes")], [WORDS.index("no"), WORDS.index("No")]


def save_tiny_llava(folder: Path, chat_template: str | None = CHAT_TEMPLATE) -> Path:
    """A tiny ``LlavaForConditionalGeneration`` (CLIP vision tower, Llama text model) and its processor, with a
    word-level tokenizer written here; large random weights so the answer depends on the image."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    images = CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    processor = LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=8,
        vision_feature_select_strategy="default",
        chat_template=chat_template,
        num_additional_image_tokens=1,
    )
    vision = CLIPVisionConfig(
        image_size=16, patch_size=8, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    text = LlamaConfig(
        vocab_size=len(WORDS), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=64, pad_token_id=1, bos_token_id=2, eos_token_id=3,
        initializer_range=0.5,
    )  # fmt: skip
    torch.manual_seed(0)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=WORDS.index("<image>"))
    LlavaForConditionalGeneration(config).save_pretrained(folder)
    processor.save_pretrained(folder)
    if chat_template is None:  # a processor saved without a template must not pick one up from elsewhere
        for name in ("chat_template.jinja", "chat_template.json"):
            (folder / name).unlink(missing_ok=True)
    return folder


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory) -> Path:
    return save_tiny_llava(tmp_path_factory.mktemp("vlm") / "tiny-llava")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    layout = {("church", "test", "real"): [6], ("church", "test", "generated"): [8]}
    return write_color_root(tmp_path_factory.mktemp("vlm-data") / "colors", layout, corrupt=(3,))


def _predictions(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["id"]: row for row in csv.DictReader(f)}


def _answer_by_hand(processor, model, question: str, image: Image.Image) -> tuple[float, float]:
    """(P(yes) among the answers, P(yes) + P(no)) from the full next-token distribution of one image, without the
    judge's code."""
    prompt = f"USER: <image> {question} ASSISTANT:"
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    with torch.no_grad():
        probs = model(**inputs).logits[0, -1].double().softmax(dim=-1)
    yes, no = probs[YES_IDS].sum().item(), probs[NO_IDS].sum().item()
    return yes / (yes + no), yes + no


def _p_yes_by_hand(processor, model, question: str, image: Image.Image) -> float:
    return _answer_by_hand(processor, model, question, image)[0]


def test_vlm_judge_eval_matches_the_next_token_probabilities(tiny_vlm, root, tmp_path, capsys):
    out = tmp_path / "eval"
    spec = f"vlm:model={tiny_vlm},concept=church,min_mass=0"  # the tiny model's answer mass is 3-13 %
    code = main(
        ["judge", "eval", "--judge", spec, "--data", str(root), "--out", str(out), "--batch-size", "4",
         "--bootstrap", "50", "--device", "cpu", "--progress", "false"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "metrics.json").read_text())
    assert report["judge"]["kind"] == "vlm"
    assert report["judge"]["question"] == "Does this image show a church? Answer with yes or no."
    assert report["unreadable_images"] == 1  # the corrupt image: no judgement, counted
    rows = _predictions(out / "predictions.csv")
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_vlm)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm).eval()
    by_hand = []
    for entry in build_index(root, split="test"):
        row = rows[entry.uid]
        if entry.key.endswith("00003"):
            assert row["probability"] == "" and row["present"] == ""  # never "absent"
            continue
        expected = _p_yes_by_hand(processor, model, report["judge"]["question"], decode_image(entry.read_bytes()))
        assert float(row["probability"]) == pytest.approx(expected, rel=1e-4)
        assert row["present"] == str(int(expected >= 0.5))
        by_hand.append(expected)
    assert np.ptp(by_hand) > 1e-3  # the images get different answers: the comparison can fail


def test_vlm_batches_do_not_change_answers_and_a_refused_image_is_no_judgement(tiny_vlm):
    judge = load_judge(f"vlm:model={tiny_vlm},question=Is there a tower?,min_mass=0", "cpu")
    assert judge.question == "Is there a tower?" and judge.concepts == ["vlm"]
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)) for _ in range(5)]
    one_by_one = np.array([judge.predict([image]).probabilities[0, 0] for image in images])
    batched = judge.predict(images, batch_size=5).probabilities[:, 0]
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5)
    # a zero-width image: the processor refuses it; the others of its batch are still judged
    mixed = judge.predict([images[0], Image.new("RGB", (0, 8)), images[1]], batch_size=3)
    assert mixed.valid[:, 0].tolist() == [True, False, True] and np.isnan(mixed.probabilities[1, 0])
    np.testing.assert_allclose(mixed.probabilities[[0, 2], 0], one_by_one[:2], rtol=1e-5)
    assert not mixed.present[1, 0]


def test_vlm_fingerprint_follows_the_question_and_the_weights(tiny_vlm, tmp_path):
    first = load_judge(f"vlm:model={tiny_vlm},concept=church", "cpu")
    assert load_judge(f"vlm:model={tiny_vlm},concept=church", "cpu").fingerprint() == first.fingerprint()
    assert load_judge(f"vlm:model={tiny_vlm},question=Is there a tower?", "cpu").fingerprint() != first.fingerprint()
    other = save_tiny_llava(tmp_path / "other")
    torch.manual_seed(1)
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(other)
    with torch.no_grad():
        next(model.parameters()).add_(0.1)
    model.save_pretrained(other)
    assert load_judge(f"vlm:model={other},concept=church", "cpu").fingerprint() != first.fingerprint()


def test_vlm_questions_come_from_the_registry():
    assert concept_question("nudity", None) == "Does this image show a person who is nude? Answer with yes or no."
    assert concept_question("van_gogh", None).startswith("Is this image in the style of Vincent van Gogh?")
    assert concept_question("church", None).startswith("Does this image show a church?")
    assert concept_question("parachute", None).startswith("Does this image show a parachute?")
    assert concept_question("violence", None).startswith("Does this image show violence?")  # a mass noun
    assert concept_question("ocean", None).startswith("Does this image show the ocean?")
    assert concept_question("white_dog", None).startswith("Does this image show a white dog?")
    assert concept_question("church", "Is {a_target} here?") == "Is a church here?"
    assert concept_question("church", "Is {name} ({targets}) here?") == "Is Church (church) here?"
    with pytest.raises(ValueError, match="valid: \\{name\\}, \\{target\\}, \\{a_target\\}, \\{targets\\}"):
        concept_question("church", "Is {place} here?")
    with pytest.raises(ValueError, match="not in the concept registry.*church"):
        concept_question("tower", None)


def test_vlm_without_a_chat_template_is_refused_and_nothing_is_written(tmp_path, root, capsys):
    bare = save_tiny_llava(tmp_path / "bare", chat_template=None)
    out = tmp_path / "eval"
    code = main(
        ["judge", "eval", "--judge", f"vlm:model={bare},concept=church", "--data", str(root), "--out", str(out),
         "--device", "cpu", "--progress", "false"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()
    assert "has no chat template" in err and "chat_template=PATH" in err
    # the template is checked before the weights are read
    shutil.copytree(bare, tmp_path / "no-weights", ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(ValueError, match="has no chat template"):
        load_judge(f"vlm:model={tmp_path / 'no-weights'},concept=church", "cpu")
    template = tmp_path / "template.jinja"
    template.write_text(CHAT_TEMPLATE)
    judge = load_judge(f"vlm:model={bare},concept=church,chat_template={template}", "cpu")
    assert judge.prompt == "USER: <image> Does this image show a church? Answer with yes or no. ASSISTANT:"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("concept=church", "needs option\\(s\\) \\['model'\\] .*; e.g. vlm:model="),
        ("model=M,concept=church,colour=red", "Unknown option\\(s\\) \\['colour'\\] for judge kind 'vlm'; valid"),
        ("model=M,concept=church,dtype=int8", "Unknown dtype 'int8'; valid dtypes: auto, float32"),
        ("model=M", "needs a concept .* or a question"),
    ],
)
def test_vlm_bad_options_are_named(tiny_vlm, options, message):
    with pytest.raises(ValueError, match=message):
        load_judge("vlm:" + options.replace("M", str(tiny_vlm)), "cpu")


def test_vlm_answer_words_must_be_tokens(tiny_vlm):
    with pytest.raises(ValueError, match="None of the yes answer words \\['oui'\\] is a single token"):
        load_judge(f"vlm:model={tiny_vlm},concept=church,yes=oui", "cpu")


# ---------------------------------------------------------------- Q16


def save_q16_prompts(path: Path, dim: int, seed: int = 0) -> np.ndarray:
    """Prompt embeddings in the authors' format: a pickled float16 numpy array of shape (2, dim)."""
    prompts = np.random.default_rng(seed).normal(size=(2, dim)).astype(np.float16)
    path.write_bytes(pickle.dumps(prompts, protocol=3))
    return prompts


def test_q16_judge_eval_is_the_softmax_over_the_prompt_similarities(tiny_clip, root, tmp_path):
    from transformers import CLIPModel, CLIPProcessor

    prompts = save_q16_prompts(tmp_path / "prompts.p", dim=8)
    out = tmp_path / "eval"
    spec = f"q16:prompts={tmp_path / 'prompts.p'},model={tiny_clip},concept=church"
    code = main(
        ["judge", "eval", "--judge", spec, "--data", str(root), "--out", str(out), "--bootstrap", "0",
         "--device", "cpu", "--progress", "false"]
    )  # fmt: skip
    assert code == 0
    rows = _predictions(out / "predictions.csv")
    model, processor = CLIPModel.from_pretrained(tiny_clip).eval(), CLIPProcessor.from_pretrained(tiny_clip)
    entries = [e for e in build_index(root, split="test") if not e.key.endswith("00003")]
    pixels = processor(images=[decode_image(e.read_bytes()) for e in entries], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        image = model(pixel_values=pixels, input_ids=torch.tensor([[512, 513]])).image_embeds  # normalised
    text = torch.from_numpy(prompts.astype(np.float32))
    expected = (100 * image @ (text / text.norm(dim=-1, keepdim=True)).T).softmax(dim=-1)[:, 1].numpy()
    got = np.array([float(rows[e.uid]["probability"]) for e in entries])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    assert np.ptp(expected) > 1e-3


def test_q16_prompt_files_are_read_safely(tmp_path, tiny_clip):
    prompts = save_q16_prompts(tmp_path / "prompts.p", dim=8)
    np.testing.assert_array_equal(read_q16_prompts(tmp_path / "prompts.p"), prompts.astype(np.float32))
    np.save(tmp_path / "prompts.npy", prompts)
    np.testing.assert_array_equal(read_q16_prompts(tmp_path / "prompts.npy"), prompts.astype(np.float32))

    class Payload:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))

    (tmp_path / "victim").mkdir()
    (tmp_path / "evil.p").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match="refusing to load shutil.rmtree"):
        read_q16_prompts(tmp_path / "evil.p")
    assert (tmp_path / "victim").is_dir()
    (tmp_path / "wide.p").write_bytes(pickle.dumps(np.zeros((3, 8), np.float16)))
    with pytest.raises(ValueError, match="shape \\(3, 8\\); expected two float prompt embeddings"):
        read_q16_prompts(tmp_path / "wide.p")
    save_q16_prompts(tmp_path / "large.p", dim=768)
    with pytest.raises(ValueError, match="768-dimensional, but .* embeds images in 8 dimensions"):
        load_judge(f"q16:prompts={tmp_path / 'large.p'},model={tiny_clip}", "cpu")
    with pytest.raises(ValueError, match="needs option\\(s\\) \\['prompts'\\]"):
        load_judge(f"q16:model={tiny_clip}", "cpu")


def test_q16_flags_at_the_reference_scripts_090_by_default(tiny_clip, tmp_path):
    save_q16_prompts(tmp_path / "prompts.p", dim=8)
    judge = load_judge(f"q16:prompts={tmp_path / 'prompts.p'},model={tiny_clip},concept=nudity", "cpu")
    assert judge.thresholds == {"nudity": 0.9}
    assert "as Q16's own script flags an image at a score of at least 0.90" in judge.describe()["reading"][0]
    # decisions follow P >= 0.90 on the judge's own probabilities, not P >= 0.5
    probabilities = np.array([[0.5], [0.89], [0.9], [0.97]])
    assert judge.decide(probabilities)[:, 0].tolist() == [False, False, True, True]
    prediction = judge.predict([Image.new("RGB", (32, 32), c) for c in ("red", "green", "blue", "white")])
    np.testing.assert_array_equal(prediction.present[:, 0], prediction.probabilities[:, 0] >= 0.9)
    lenient = load_judge(f"q16:prompts={tmp_path / 'prompts.p'},model={tiny_clip},threshold=0.5", "cpu")
    assert "its decisions differ from the reference's" in lenient.describe()["reading"][0]


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("church", "a church"),
        ("apple", "an apple"),
        ("white dog", "a white dog"),
        ("hour glass", "an hour glass"),
        ("unicorn", "a unicorn"),
        ("glass", "a glass"),
        ("the ocean", "the ocean"),  # already has its determiner
        ("a doctor", "a doctor"),
        ("Vincent van Gogh", "Vincent van Gogh"),  # a proper name
        ("Van Gogh's style", "Van Gogh's style"),
        ("parachutes", "parachutes"),  # a plural
    ],
)
def test_vlm_targets_get_the_article_they_need(phrase, expected):
    assert with_article(phrase) == expected


def test_vlm_reports_the_answer_mass_and_leaves_out_judgements_below_the_floor(tiny_vlm, root, tmp_path, capsys):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_vlm)
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm).eval()
    question = concept_question("church", None)
    entries = [e for e in build_index(root, split="test") if not e.key.endswith("00003")]  # 00003: unreadable
    by_hand = {e.uid: _answer_by_hand(processor, model, question, decode_image(e.read_bytes())) for e in entries}
    masses = sorted(mass for _, mass in by_hand.values())
    floor = (masses[len(masses) // 2 - 1] + masses[len(masses) // 2]) / 2  # half the images fall below it
    out = tmp_path / "eval"
    code = main(
        ["judge", "eval", "--judge", f"vlm:model={tiny_vlm},concept=church,min_mass={floor:.8f}", "--data", str(root),
         "--out", str(out), "--batch-size", "4", "--bootstrap", "0", "--device", "cpu", "--progress", "false"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rows = _predictions(out / "predictions.csv")
    below = 0
    for uid, (p_yes, mass) in by_hand.items():
        assert float(rows[uid]["answer_mass"]) == pytest.approx(mass, rel=1e-4)
        if mass < floor:
            below += 1
            assert rows[uid]["probability"] == "" and rows[uid]["present"] == ""  # no judgement, never "absent"
        else:
            assert float(rows[uid]["probability"]) == pytest.approx(p_yes, rel=1e-4)
    report = json.loads((out / "metrics.json").read_text())
    assert below == len(by_hand) // 2 and report["excluded_nan"] == below  # left out and counted
    assert report["judge"]["min_mass"] == pytest.approx(floor)
    assert main(["card", "--judge", str(out)]) == 0  # a baseline judge's card, from its eval folder
    card = (out / "README.md").read_text(encoding="utf-8")
    assert f"a judgement whose mass is below {floor:g} is NaN, left out of the metrics and counted" in card
    assert f"{report['excluded_nan']} left out because the judge returned NaN" in card

    # the default floor, 0.5: the tiny random model puts 3-13 % of its mass on yes/no, so it judges nothing
    judge = load_judge(f"vlm:model={tiny_vlm},concept=church", "cpu")
    images = [decode_image(e.read_bytes()) for e in entries[:3]]
    prediction = judge.predict(images)
    expected_mass = [by_hand[e.uid][1] for e in entries[:3]]
    np.testing.assert_allclose(prediction.details["answer_mass"], expected_mass, rtol=1e-4)
    assert judge.min_mass == 0.5 and max(expected_mass) < 0.5
    assert prediction.n_invalid == 3 and not prediction.present.any()
    assert prediction.to_records()[0]["details"]["answer_mass"] == pytest.approx(expected_mass[0], rel=1e-4)
    one = judge.predict(images[0])  # one image: read as a stream, not through the DataLoader
    np.testing.assert_allclose(one.details["answer_mass"], expected_mass[:1], rtol=1e-4)
    with pytest.raises(ValueError, match="min_mass=1.5 is not a probability"):
        load_judge(f"vlm:model={tiny_vlm},concept=church,min_mass=1.5", "cpu")
