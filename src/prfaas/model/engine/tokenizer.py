"""Tokenizers: byte-level for random-weight presets, or a checkpoint's own (local files only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from prfaas.model.engine.errors import UnsupportedModelError
from prfaas.model.engine.presets import BOS_ID, BYTE_VOCAB, EOS_ID, PAD_ID


class Tokenizer(Protocol):
    """What the engine needs from a tokenizer."""

    eos_token_ids: frozenset[int]

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: Sequence[int]) -> str: ...


class ByteTokenizer:
    """UTF-8 bytes are tokens 0-255; PAD/BOS/EOS follow. Random weights make nonsense text."""

    vocab_size = BYTE_VOCAB
    pad_token_id, bos_token_id, eos_token_id = PAD_ID, BOS_ID, EOS_ID
    eos_token_ids = frozenset({EOS_ID})

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, token_ids: Sequence[int]) -> str:
        raw = bytes(t for t in token_ids if 0 <= t < 256)
        return raw.decode("utf-8", errors="replace")


class HFTokenizer:
    """A checkpoint's tokenizer loaded from its folder, never from the hub."""

    def __init__(self, path: Path) -> None:
        from transformers import AutoTokenizer

        try:
            self._tok: Any = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise UnsupportedModelError(f"no usable tokenizer in {path}: {exc}") from None
        eos = self._tok.eos_token_id
        self.eos_token_ids = frozenset([eos] if isinstance(eos, int) else (eos or []))

    def encode(self, text: str) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=False))

    def decode(self, token_ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(token_ids), skip_special_tokens=True))


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, which byte-level BPE vocabularies use."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars), strict=True))


def save_byte_tokenizer(path: Path) -> None:
    """Write a transformers tokenizer with ByteTokenizer's ids, so a saved preset checkpoint
    loads like any other checkpoint folder."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {ch: b for b, ch in _bytes_to_unicode().items()}
    vocab.update({"<pad>": PAD_ID, "<s>": BOS_ID, "</s>": EOS_ID})
    raw = RawTokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    raw.decoder = decoders.ByteLevel()
    fast_class: Any = PreTrainedTokenizerFast
    fast = fast_class(tokenizer_object=raw, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(str(path))
