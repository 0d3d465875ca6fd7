"""prfaas as a vLLM KV connector: `prfaas.integrations.vllm.connector`, used inside .venv-vllm."""
