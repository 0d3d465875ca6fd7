"""The router's tokenizer: the engine's byte-level one (torch-free) or a checkpoint's file."""

from __future__ import annotations

from collections.abc import Sequence

# The engine package imports torch lazily, so its tokenizer module is safe in the router.
from prfaas.model.engine.tokenizer import ByteTokenizer

__all__ = ["ByteTokenizer", "FileTokenizer", "router_tokenizer"]


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

    @property
    def vocab_size(self) -> int:
        return int(self._tok.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False).ids)

    def decode(self, token_ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(token_ids), skip_special_tokens=True))


def router_tokenizer(model_path: str | None) -> ByteTokenizer | FileTokenizer:
    """The random-weight presets use bytes; a checkpoint brings its own tokenizer."""
    return FileTokenizer(model_path) if model_path else ByteTokenizer()
