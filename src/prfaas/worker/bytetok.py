"""A torch-free byte-level tokenizer for the router and the emulated engine.

Same contract as prfaas.model.engine.tokenizer.ByteTokenizer (UTF-8 bytes are tokens 0-255), which
cannot be imported without torch while prfaas.model.engine's package imports torch eagerly; a test
checks the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence


class ByteTokenizer:
    eos_token_ids: frozenset[int] = frozenset({258})

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, token_ids: Sequence[int]) -> str:
        return bytes(t for t in token_ids if 0 <= t < 256).decode("utf-8", errors="replace")


class FileTokenizer:
    """A checkpoint's tokenizer.json through the `tokenizers` library (no torch, no transformers),
    so the router tokenizes exactly as the workers' engine does."""

    def __init__(self, path: str) -> None:
        from pathlib import Path

        from tokenizers import Tokenizer

        from prfaas.errors import ConfigError

        file = Path(path) / "tokenizer.json"
        if not file.is_file():
            raise ConfigError(f"engine.model_path {path}: no tokenizer.json for the router")
        self._tok = Tokenizer.from_file(str(file))

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, token_ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(token_ids), skip_special_tokens=True))


def router_tokenizer(model_path: str | None) -> ByteTokenizer | FileTokenizer:
    """The random-weight presets use bytes; a checkpoint brings its own tokenizer."""
    return FileTokenizer(model_path) if model_path else ByteTokenizer()
