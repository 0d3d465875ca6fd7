"""KV transfer engine: layer-wise, multi-connection, authenticated TCP transport (see tcp.py).

Modules: frames (wire format, bounded decoder), protocol (handshake and sequencing state
machines), tracker (chunk bookkeeping), checksum, sockio (zero-copy socket I/O), server and
client/pool (asyncio transport; public API re-exported by tcp), telemetry (LinkTelemetry),
shaping (token bucket + delay relay), netns (namespaces + tbf), bench/benchenv/benchproc/peers
(`prfaas transfer-bench`). Only frames, protocol, tracker and checksum are sans-IO.
"""
