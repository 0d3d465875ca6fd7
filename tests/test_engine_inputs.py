"""Bad requests get typed errors with clear messages; checkpoints load from a local folder."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import torch

from prfaas.errors import ConfigError, UsageError
from prfaas.model.engine import Engine, SamplingParams
from prfaas.model.engine.errors import (
    EngineInputError,
    SamplingError,
    UnsupportedModelError,
)
from prfaas.model.engine.loading import save_checkpoint
from prfaas.model.engine.tokenizer import ByteTokenizer

pytestmark = pytest.mark.engine


@functools.cache
def engine() -> Engine:
    return Engine.from_preset("qwen3.5-tiny")


def test_empty_prompt_is_refused() -> None:
    with pytest.raises(EngineInputError, match="empty prompt"):
        engine().prefill([])
    with pytest.raises(EngineInputError, match="empty prompt"):
        engine().generate([])


def test_prompt_over_the_context_limit_is_refused() -> None:
    limit = engine().max_context_tokens
    with pytest.raises(EngineInputError, match=f"context limit of {limit}"):
        engine().prefill([1] * (limit + 1))
    with pytest.raises(EngineInputError, match="exceeds the context limit"):
        engine().generate([1] * (limit - 4), SamplingParams(max_tokens=5))


@pytest.mark.parametrize("bad", [-1, 259, 10**9, 1.5, True, "a"])
def test_token_ids_outside_the_vocabulary_are_refused(bad: object) -> None:
    with pytest.raises(EngineInputError, match="outside the vocabulary"):
        engine().prefill([1, 2, bad])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 0),
        ("max_tokens", -3),
        ("max_tokens", 2.5),
        ("temperature", -0.1),
        ("temperature", 1e6),
        ("temperature", math.nan),
        ("temperature", math.inf),
        ("top_p", 0.0),
        ("top_p", -1.0),
        ("top_p", 1.5),
        ("top_p", math.nan),
        ("seed", -1),
        ("seed", 2**64),
        ("stop", "x"),
        ("stop", [""]),
        ("stop", ["a"] * 17),
        ("stop", ["x" * 999]),
    ],
)
def test_negative_or_absurd_sampling_parameters_are_refused(field: str, value: object) -> None:
    with pytest.raises(SamplingError, match=field if field != "stop" else "stop"):
        SamplingParams(**{field: value})  # type: ignore[arg-type]
    assert issubclass(SamplingError, UsageError)


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(EngineInputError, match="chunk_tokens"):
        engine().prefill([1, 2, 3], chunk_tokens=0)


def test_a_request_cannot_join_a_batch_twice() -> None:
    eng = engine()
    result = eng.prefill([1, 2, 3])
    batch = eng.decode_batch()
    batch.add("a", result.cache, result.first_token, SamplingParams(max_tokens=4))
    with pytest.raises(EngineInputError, match="already decoding"):
        batch.add("a", result.cache, result.first_token, SamplingParams(max_tokens=4))


def test_unknown_preset_and_bad_folder_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown engine preset"):
        Engine.from_preset("gpt-9")
    with pytest.raises(UnsupportedModelError, match=r"no config\.json"):
        Engine.from_path(tmp_path)


def test_byte_tokenizer_round_trips_utf8() -> None:
    tok = ByteTokenizer()
    text = "héllo, 世界"
    assert tok.decode(tok.encode(text)) == text
    assert all(0 <= t < 256 for t in tok.encode(text))


def test_checkpoint_folder_loads_config_weights_and_tokenizer(tmp_path: Path) -> None:
    """--model-path: a saved tiny checkpoint reloads offline with the same weights and ids."""
    source = Engine.from_preset("qwen3.5-tiny", seed=5)
    folder = tmp_path / "tiny-ckpt"
    save_checkpoint(source.loaded, folder)
    loaded = Engine.from_path(folder)
    text = "prefill as a service"
    ids = loaded.tokenizer.encode(text)
    assert ids == source.tokenizer.encode(text)
    assert loaded.tokenizer.decode(ids) == text
    assert torch.equal(loaded.prefill(ids).logits, source.prefill(ids).logits)
    assert loaded.state_spec.kv_bytes(100) == source.state_spec.kv_bytes(100)
    assert loaded.model_id == "tiny-ckpt" and loaded.eos_token_ids == source.eos_token_ids


def test_presets_tokenizer_and_errors_import_without_torch() -> None:
    """The router and the emulated engine may use these without the `engine` extra."""
    import subprocess
    import sys

    code = (
        "import sys; from prfaas.model.engine.tokenizer import ByteTokenizer; "
        "from prfaas.model.engine import PRESETS, DEFAULT_PRESET; "
        "from prfaas.model.engine.errors import WireFormatError; "
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules; "
        "assert DEFAULT_PRESET in PRESETS and ByteTokenizer().encode('a') == [97]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
