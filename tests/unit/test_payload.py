"""Payload rules: a JSON object, serialisable, finite, within the size limit."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from jobforge import Forge, PayloadError, PayloadTooLarge, ValidationError
from jobforge.jobs import (
    DEFAULT_MAX_PAYLOAD_BYTES,
    encode_payload,
    encode_result,
    parse_payload_text,
)


def test_object_is_encoded_compactly() -> None:
    text = encode_payload({"a": 1, "b": [1, 2], "c": {"d": None}}, 1000)
    assert text == '{"a":1,"b":[1,2],"c":{"d":null}}'
    assert json.loads(text) == {"a": 1, "b": [1, 2], "c": {"d": None}}


def test_empty_object_is_fine() -> None:
    assert encode_payload({}, 10) == "{}"


@pytest.mark.parametrize(
    ("payload", "type_name"),
    [([1, 2], "list"), ("text", "str"), (3, "int"), (None, "NoneType"), ((1,), "tuple")],
)
def test_non_object_refused(payload: object, type_name: str) -> None:
    with pytest.raises(PayloadError) as info:
        encode_payload(payload, 1000)
    assert str(info.value) == f"Payload must be a JSON object, got {type_name}"
    assert isinstance(info.value, ValidationError)
    assert info.value.code == "bad_payload"


@pytest.mark.parametrize(
    "payload",
    [{"a": object()}, {"a": {1, 2}}, {"a": b"bytes"}, {"nested": {"deep": [1, object()]}}],
)
def test_non_serialisable_refused(payload: dict[str, object]) -> None:
    with pytest.raises(PayloadError, match="Payload is not JSON-serialisable"):
        encode_payload(payload, 10_000)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_refused(bad: float) -> None:
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        encode_payload({"x": bad}, 10_000)
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        encode_payload({"x": [1.0, {"y": bad}]}, 10_000)


def test_size_limit_is_exact_and_message_names_both_sizes() -> None:
    payload = {"a": "x" * 100}  # '{"a":"' + 100 + '"}' = 108 bytes
    assert len(encode_payload(payload, 108)) == 108  # at the limit: accepted
    with pytest.raises(PayloadTooLarge) as info:
        encode_payload(payload, 107)
    assert str(info.value) == "Payload is 108 bytes, over the limit of 107 bytes"
    assert info.value.code == "payload_too_large"
    assert info.value.http_status == 413
    assert isinstance(info.value, ValidationError)


def test_size_counts_utf8_bytes_not_characters() -> None:
    # json.dumps escapes non-ASCII (\u00e9 = 6 bytes per character).
    payload = {"s": "é" * 10}
    size = len(json.dumps(payload, separators=(",", ":")).encode())
    assert size == 8 + 60
    encode_payload(payload, size)
    with pytest.raises(PayloadTooLarge, match=f"Payload is {size} bytes"):
        encode_payload(payload, size - 1)


def test_default_limit_is_one_mebibyte() -> None:
    assert DEFAULT_MAX_PAYLOAD_BYTES == 1024 * 1024
    big = {"blob": "x" * (DEFAULT_MAX_PAYLOAD_BYTES - 11)}  # {"blob":"..."} = 11 + n bytes
    encode_payload(big, DEFAULT_MAX_PAYLOAD_BYTES)
    with pytest.raises(PayloadTooLarge, match=f"limit of {DEFAULT_MAX_PAYLOAD_BYTES} bytes"):
        encode_payload({"blob": big["blob"] + "x"}, DEFAULT_MAX_PAYLOAD_BYTES)


def test_parse_payload_text() -> None:
    assert parse_payload_text('{"a": [1, 2]}') == {"a": [1, 2]}
    with pytest.raises(PayloadError, match="must be a JSON object, got list"):
        parse_payload_text("[1, 2]")
    with pytest.raises(PayloadError, match="not valid JSON"):
        parse_payload_text("{a: 1}")


def test_encode_result_falls_back_to_string_form() -> None:
    assert encode_result(None) is None
    assert encode_result({"n": 1}) == '{"n":1}'
    assert json.loads(encode_result({1, 2}) or "") == "{1, 2}"
    assert json.loads(encode_result(math.nan) or "") == "nan"


# -- through Forge.enqueue: refused before the database is even opened ---------------------


@pytest.fixture
def offline_app(tmp_path: Path) -> Forge:
    app = Forge(f"sqlite:///{tmp_path / 'never.db'}", max_payload_bytes=64)

    @app.job
    def work(ctx: object, **kwargs: object) -> None:
        return None

    return app


def test_enqueue_refuses_bad_payloads_without_touching_the_database(
    offline_app: Forge, tmp_path: Path
) -> None:
    with pytest.raises(PayloadError, match="got list"):
        offline_app.enqueue("work", [1])  # type: ignore[arg-type]
    with pytest.raises(PayloadError, match="not JSON-serialisable"):
        offline_app.enqueue("work", {"x": math.nan})
    with pytest.raises(PayloadTooLarge, match="over the limit of 64 bytes"):
        offline_app.enqueue("work", {"x": "y" * 100})
    assert offline_app._store is None
    assert not (tmp_path / "never.db").exists()


def test_payload_limit_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("JOBFORGE_MAX_PAYLOAD_BYTES", "20")
    app = Forge(f"sqlite:///{tmp_path / 'x.db'}", allow_unknown_types=True)
    assert app.max_payload_bytes == 20
    with pytest.raises(PayloadTooLarge, match="Payload is 21 bytes, over the limit of 20 bytes"):
        app.enqueue("anything", {"k": "v" * 13})  # {"k":"v...v"} = 8 + 13 = 21 bytes
    # An explicit limit wins over the environment.
    assert Forge(f"sqlite:///{tmp_path / 'y.db'}", max_payload_bytes=5).max_payload_bytes == 5
