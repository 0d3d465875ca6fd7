"""Write a tiny local checkpoint for vLLM: hybrid Qwen3-Next, or dense Qwen3 without native bf16."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

VOCAB = 1000
_TEXT = (
    "the a of to and in is that for it as was with be by on not he this are or his from at which "
    "but have an they you were her she there been one all we their has would when if so no will "
    "can more time prefill decode cache block layer token bandwidth router cluster request model "
    "transfer link queue memory state attention linear hybrid expert river mountain city garden"
)
_WORDS = _TEXT.split()


def has_native_bf16(cpuinfo: str | None = None) -> bool:
    """True when the CPU advertises AVX512-BF16 or AMX-BF16 (vLLM's CPU GDN kernels need one)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def _corpus(n_lines: int = 4000) -> list[str]:
    # A fixed pseudo-random corpus (LCG, no global RNG) so the tokenizer is the same everywhere.
    state, lines = 12345, []
    for _ in range(n_lines):
        words = []
        for _ in range(12):
            state = (state * 1103515245 + 12345) % (1 << 31)
            words.append(_WORDS[state % len(_WORDS)])
        lines.append(" ".join(words) + ".")
    return lines


def _write_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    make: Any = PreTrainedTokenizerFast  # transformers' stubs are partial
    fast = make(tokenizer_object=tok, eos_token="<|endoftext|>")
    fast.save_pretrained(str(out))


# "medium" is the larger hybrid for GPU runs (benchmarks/gpu_vllm.sh): ~1 B parameters.
SIZES = {
    "tiny": {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 4,
             "num_attention_heads": 4, "num_key_value_heads": 2, "num_experts": 4},
    # 16 layers, attention every 2nd: vLLM calls save_kv_layer 8 times per forward (layer-wise
    # push measurement, integrations/vllm/layerwise_bench.py); "tiny" calls it once, at the end.
    "deep": {"hidden_size": 256, "intermediate_size": 512, "num_hidden_layers": 16,
             "num_attention_heads": 4, "num_key_value_heads": 2, "num_experts": 4,
             "attn_interval": 2},
    "medium": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 24,
               "num_attention_heads": 16, "num_key_value_heads": 4, "num_experts": 16},
}


def _config(hybrid: bool, size: str = "tiny") -> object:
    dims: dict[str, Any] = dict(SIZES[size])
    experts = dims.pop("num_experts")
    interval = dims.pop("attn_interval", 4)
    common: dict[str, Any] = dict(
        vocab_size=1024, head_dim=64, max_position_embeddings=32768,
        eos_token_id=0, bos_token_id=0, tie_word_embeddings=False, **dims,
    )
    if hybrid:
        from transformers import Qwen3NextConfig

        make: Any = Qwen3NextConfig
        return make(
            linear_num_value_heads=4, linear_num_key_heads=2, linear_key_head_dim=64,
            linear_value_head_dim=64, num_experts=experts, num_experts_per_tok=2,
            moe_intermediate_size=128, shared_expert_intermediate_size=128,
            full_attention_interval=interval, **common,
        )
    from transformers import Qwen3Config

    make_dense: Any = Qwen3Config
    return make_dense(**common)


def write(out: Path, hybrid: bool, seed: int = 0, size: str = "tiny") -> dict[str, object]:
    """Save config, random weights (safetensors: one draw every instance loads) and tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    cfg = _config(hybrid, size)
    arch = "Qwen3NextForCausalLM" if hybrid else "Qwen3ForCausalLM"
    cfg.architectures = [arch]  # type: ignore[attr-defined]
    dtype = torch.bfloat16 if hybrid else torch.float32
    auto: Any = AutoModelForCausalLM
    model = auto.from_config(cfg, dtype=dtype)
    # Wider-than-default init so greedy outputs differ between prompts (random weights otherwise
    # collapse to one token), which makes output comparisons across instances meaningful.
    std = 1.28 / SIZES[size]["hidden_size"] ** 0.5  # 0.08 for "tiny"
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, std)
    model.save_pretrained(str(out), safe_serialization=True)
    _write_tokenizer(out)
    info = {"model": arch, "hybrid": hybrid, "dtype": "bfloat16" if hybrid else "float32",
            "size": size}
    (out / "prfaas_tiny.json").write_text(json.dumps(info))
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("--dense", action="store_true", help="force the dense fallback model")
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--gpu", action="store_true", help="the target has a GPU: keep the hybrid")
    args = ap.parse_args(argv)
    hybrid = (args.gpu or has_native_bf16()) and not args.dense
    if (args.out / "prfaas_tiny.json").exists():
        info = json.loads((args.out / "prfaas_tiny.json").read_text())
    else:
        info = write(args.out, hybrid, size=args.size)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
