"""prfaas: Prefill-as-a-Service for hybrid-attention LLMs (arXiv 2604.15039), reference code."""

__version__ = "0.1.0"
