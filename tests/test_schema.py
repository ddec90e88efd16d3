import pytest
from conftest import make_sample

from dataigm.schema import FIELD_NAMES, SchemaError, check_key, make_key, normalize_record, validate_record


def _valid_record() -> dict:
    return normalize_record(make_sample("church", "train", "real", 1).record | {"sha256": "0" * 64})


def test_valid_record_passes_and_has_every_field():
    record = _valid_record()
    validate_record(record, cls=1, concepts={"church": "local/concrete/entity"})
    assert list(record) == list(FIELD_NAMES)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label": "maybe"}, "'label' = 'maybe'; valid values: pair, target"),
        ({"source": "web"}, "'source' = 'web'; valid values: real, laion, generated"),
        ({"height": "12"}, "'height' = '12' should be int"),
        ({"concept": None}, "'concept' must not be null"),
        ({"prompt_kind": "forgot"}, "valid values: forget, remove, replace"),
        ({"sha256": "abc"}, "not a lower-case hex sha256"),
        ({"category": "local/abstract/status"}, "but concept 'church' is 'local/concrete/entity'"),
        ({"concept": "nudity"}, "known concepts: church"),
        ({"source": "generated", "origin": None}, "Generated sample needs field(s)"),
    ],
)
def test_bad_field_is_named(change, message):
    record = _valid_record() | change
    with pytest.raises(SchemaError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_record(record, cls=1, concepts={"church": "local/concrete/entity"})


def test_missing_and_unknown_fields_are_named():
    record = _valid_record()
    del record["seed"]
    with pytest.raises(SchemaError, match=r"missing field\(s\) \['seed'\]"):
        validate_record(record)
    with pytest.raises(SchemaError, match="Unknown field"):
        normalize_record({"concept": "church", "colour": "red"})


def test_cls_must_agree_with_label():
    with pytest.raises(SchemaError, match="disagrees with label 'target'"):
        validate_record(_valid_record(), cls=0)


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        # a part whose characters were replaced carries the first 8 hex digits of its sha256 (issue 11)
        (("real", "img.001.png"), "real_img-001-png-2d6f940d"),
        (("gen", "church-forget-003", 7), "gen_church-forget-003_7"),
        (("a b", "ü"), "a-b-c8687a08_607474ca"),
    ],
)
def test_make_key_is_dot_free(parts, key):
    assert make_key(*parts) == key
    assert "." not in key


@pytest.mark.parametrize("key", ["a.b", "_hidden", "", "sp ace"])
def test_check_key_refuses(key):
    with pytest.raises(SchemaError, match="no dots"):
        check_key(key)
