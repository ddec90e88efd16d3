"""Exact duplicates are the picture as it is shown: EXIF orientation applied, an opaque alpha channel ignored."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
from helpers.data import make_sample, write_test_root

from dataigm import Sample, ShardId, make_key, write_shard
from dataigm.duplicates import CACHE_DIR, HASH_VERSION, find_duplicates, pixel_hashes
from dataigm.manifest import read_manifest

ROTATE_90_CLOCKWISE = 6  # EXIF Orientation: the stored pixels are shown turned 90 degrees clockwise


def _noise(seed: int, shape=(40, 56, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _encode(pixels: np.ndarray, fmt: str = "PNG", **kwargs) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def _decode(data: bytes) -> np.ndarray:
    """The stored pixels, as decoded, without any orientation applied."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def _digest(pixels: np.ndarray) -> str:
    mode = {3: "RGB", 4: "RGBA"}[pixels.shape[2]]
    header = f"{mode} {pixels.shape[1]}x{pixels.shape[0]}\n".encode()
    return hashlib.sha256(header + np.ascontiguousarray(pixels).tobytes()).hexdigest()


def _exif_rotated_jpeg(pixels: np.ndarray) -> bytes:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = ROTATE_90_CLOCKWISE  # the Orientation tag
    return _encode(pixels, "JPEG", quality=90, exif=exif.tobytes())


def test_an_exif_rotated_jpeg_is_the_same_picture_as_its_pixel_rotated_copy():
    jpeg = _exif_rotated_jpeg(_noise(0))
    shown = np.rot90(_decode(jpeg), k=-1)  # what a viewer shows: the stored pixels turned clockwise
    rotated_png = _encode(shown)
    assert shown.shape[:2] == (56, 40)
    assert pixel_hashes(jpeg)[0] == pixel_hashes(rotated_png)[0] == _digest(shown)
    assert pixel_hashes(jpeg)[1] == pixel_hashes(rotated_png)[1]  # and the perceptual hash agrees
    # the stored (unrotated) pixels are another picture
    assert pixel_hashes(_encode(_decode(jpeg)))[0] != _digest(shown)


def test_an_opaque_rgba_copy_is_an_exact_duplicate_and_one_transparent_pixel_is_not():
    rgb = _noise(1)
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    holed = opaque.copy()
    holed[3, 5, 3] = 0
    assert pixel_hashes(_encode(opaque))[0] == pixel_hashes(_encode(rgb))[0] == _digest(rgb)
    assert pixel_hashes(_encode(holed))[0] == _digest(holed) != _digest(rgb)


def _sample(split: str, name: str, data: bytes, ext: str) -> Sample:
    record = make_sample("church", split, "real", 0).record | {"origin": f"test/{name}.{ext}"}
    return Sample(make_key("real", name), data, ext, 1, record)


def test_find_duplicates_reports_the_exif_and_alpha_copies_written_to_shards(tmp_path):
    jpeg = _exif_rotated_jpeg(_noise(2))
    rgb = _noise(3)
    opaque = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    holed = opaque.copy()
    holed[0, 0, 3] = 128
    root = write_test_root(tmp_path / "root", {("church", "train", "real"): [1]})
    train = [_sample("train", "rotated", jpeg, "jpg"), _sample("train", "rgb", _encode(rgb), "png")]
    test = [
        _sample("test", "upright", _encode(np.rot90(_decode(jpeg), k=-1)), "png"),
        _sample("test", "opaque", _encode(opaque), "png"),
        _sample("test", "holed", _encode(holed), "png"),
    ]
    write_shard(root, ShardId("church", "train", "real", 1), train)
    write_shard(root, ShardId("church", "test", "real", 0), test)
    report = find_duplicates(root, near_distance=0)
    found = {frozenset(m.key for m in g.members): (g.kind, g.leakage) for g in report.groups}
    assert found == {
        frozenset({"real_rotated", "real_upright"}): ("exact", True),
        frozenset({"real_rgb", "real_opaque"}): ("exact", True),
    }


def test_a_hash_cache_of_another_hashing_rule_is_not_read(tmp_path):
    jpeg = _exif_rotated_jpeg(_noise(4))
    root = write_test_root(tmp_path / "root", {("church", "train", "real"): [1]})
    write_shard(root, ShardId("church", "train", "real", 1), [_sample("train", "rotated", jpeg, "jpg")])
    write_shard(
        root,
        ShardId("church", "test", "real", 0),
        [_sample("test", "upright", _encode(np.rot90(_decode(jpeg), -1)), "png")],
    )
    first = find_duplicates(root, near_distance=0).to_dict()
    assert first["counts"]["leakage"] == 1
    cache = root / CACHE_DIR
    names = {p.name for p in cache.iterdir()}
    shas = {entry["sha256"] for entry in read_manifest(root)["shards"].values()}
    assert names == {f"{sha}-v{HASH_VERSION}.json" for sha in shas}  # the rule's version is in every cache key
    # what the previous rule (version 1: no orientation) cached for these shards: no duplicates
    for path in cache.iterdir():
        old = json.loads(path.read_text())
        old["samples"] = {
            k: [hashlib.sha256(k.encode()).hexdigest(), "0" * 16, False, v[3]] for k, v in old["samples"].items()
        }
        path.with_name(path.name.replace(f"-v{HASH_VERSION}", f"-v{HASH_VERSION - 1}")).write_text(json.dumps(old))
        path.unlink()
    assert find_duplicates(root, near_distance=0).to_dict() == first
