"""The vLLM connector's pure parts, block copies and network link, without vLLM installed."""

from __future__ import annotations

import ssl
import subprocess
import sys
import threading
import time

import pytest
import torch

from prfaas.integrations.vllm import kvio
from prfaas.integrations.vllm.link import KvLink
from prfaas.integrations.vllm.params import (
    ConnectorConfigError,
    decode_params,
    layer_order,
    live_blocks,
    parse_config,
    prefill_params,
    remote_token_count,
    tail_align,
    wants_remote_decode,
    wants_remote_prefill,
)
from prfaas.transfer.payloads import LayerPayload


@pytest.fixture
def secret_file(tmp_path):
    p = tmp_path / "s"
    p.write_text("0123456789abcdef0123456789abcdef\n")
    return p


def test_config_reads_the_secret_from_a_file_and_validates_addresses(secret_file):
    cfg = parse_config({"secret_file": str(secret_file), "listen": "127.0.0.1:0",
                        "peers": {"d0": "10.0.0.2:7000"}}, "fallback-id")
    assert cfg.secret == b"0123456789abcdef0123456789abcdef"
    assert cfg.engine_id == "fallback-id" and cfg.peers == {"d0": ("10.0.0.2", 7000)}
    with pytest.raises(ConnectorConfigError, match="secret_file"):
        parse_config({}, "x")
    with pytest.raises(ConnectorConfigError, match="HOST:PORT"):
        parse_config({"secret_file": str(secret_file), "peers": {"d": "nohost"}}, "x")


def test_request_contract():
    p, d = prefill_params("t1", "dec"), decode_params("t1", "pre")
    assert wants_remote_decode(p) and not wants_remote_prefill(p)
    assert wants_remote_prefill(d) and not wants_remote_decode(d)
    assert not wants_remote_decode({"do_remote_decode": True})  # no transfer_id: no transfer
    assert remote_token_count(100) == 99 and remote_token_count(1) == 0


def test_layer_order_and_blocks():
    names = ["model.layers.10.attn", "model.layers.2.linear_attn", "model.layers.0.attn"]
    assert layer_order(names) == names[::-1]
    assert live_blocks([0, 0, 5], True) == [5] and live_blocks([0, 3], False) == [0, 3]
    assert tail_align(5, 2) == 3
    with pytest.raises(ValueError):
        tail_align(1, 2)


def test_gather_scatter_moves_exactly_the_requested_blocks():
    torch.manual_seed(0)
    nb = 12
    attn_p = torch.randn(nb, 2, 4, 8, dtype=torch.bfloat16)
    state_p = [torch.randn(nb, 3, 5), torch.randn(nb, 2, 2, 2)]
    attn_d, state_d = torch.zeros_like(attn_p), [torch.zeros_like(t) for t in state_p]
    buf = kvio.gather([attn_p], [3, 7, 9], nb)
    assert buf.numel() == 3 * kvio.block_bytes([attn_p], nb)
    # The receiver already holds the first block (a local prefix hit): it lands the last two.
    assert kvio.scatter([attn_d], [1, 2], nb, memoryview(buf.numpy())) == 3
    assert torch.equal(attn_d[1], attn_p[7]) and torch.equal(attn_d[2], attn_p[9])
    assert not attn_d[0].any() and not attn_d[3].any()
    sbuf = kvio.gather(state_p, [4], nb)
    kvio.scatter(state_d, [6], nb, memoryview(sbuf.numpy()))
    assert all(torch.equal(d[6], p[4]) for d, p in zip(state_d, state_p, strict=True))
    with pytest.raises(ValueError):
        kvio.scatter([attn_d], [1], nb, memoryview(bytearray(7)))


def test_block_dim_may_follow_a_kv_pair_dim():
    t = torch.arange(2 * 5 * 3, dtype=torch.float32).reshape(2, 5, 3)
    assert kvio.block_dim(t, 5) == 1
    out = torch.zeros_like(t)
    kvio.scatter([out], [0], 5, memoryview(kvio.gather([t], [4], 5).numpy()))
    assert torch.equal(out[:, 0], t[:, 4])


def test_link_pushes_layers_to_the_named_peer(secret_file):
    dec = KvLink(parse_config({"secret_file": str(secret_file), "listen": "127.0.0.1:0"}, "d0"))
    try:
        assert dec._server is not None
        port = dec._server.port
        pre = KvLink(parse_config({"secret_file": str(secret_file),
                                   "peers": {"d0": f"127.0.0.1:{port}"}}, "p0"))
        done = threading.Event()
        seen = []
        layers = [LayerPayload(0, b"a" * 1000), LayerPayload(1, b""), LayerPayload(2, b"c" * 10)]
        pre.push("d0", "t-1", layers, lambda r, e: (seen.append((r, e)), done.set()))
        assert done.wait(20)
        res, err = seen[0]
        assert err is None and res.total_bytes == 1010 and res.layers == 3
        got = _take(dec, "t-1")
        assert got is not None and [bytes(x) for x in got.layers] == [b"a" * 1000, b"", b"c" * 10]
        assert dec.take("t-1") is None
        done.clear()
        pre.push("nobody", "t-2", layers, lambda r, e: (seen.append((r, e)), done.set()))
        assert done.wait(20) and isinstance(seen[-1][1], KeyError)  # unknown peer: no address
        pre.close()
    finally:
        dec.close()


def test_the_rest_of_prfaas_never_imports_vllm():
    code = ("import sys, prfaas.cli, prfaas.router.vllm_backend, prfaas.router.vllm_serve, "
            "prfaas.integrations.vllm.params, prfaas.integrations.vllm.demo, "
            "prfaas.integrations.vllm.layerwise_bench, prfaas.integrations.vllm.link, "
            "prfaas.deploy.vllm_nodes, prfaas.router.vllm_pull; "
            "assert 'vllm' not in sys.modules, 'vllm imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _take(link, tid, timeout_s=10.0):
    """The receiver sends COMMITTED before it hands the transfer over: poll briefly."""
    deadline = time.monotonic() + timeout_s
    while (got := link.take(tid)) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return got


def _push(link, engine, tid):
    done, seen = threading.Event(), []
    link.push(engine, tid, [LayerPayload(0, b"k" * 5000)],
              lambda r, e: (seen.append((r, e)), done.set()))
    assert done.wait(60)
    return seen[0]


def test_tls_channel_refuses_a_peer_without_the_runs_certificate(secret_file, tmp_path):
    from prfaas.security.certs import issue_all

    pki, other = tmp_path / "pki", tmp_path / "other"
    issue_all(pki, ["d0", "p0", "imposter"])
    issue_all(other, ["p0"])  # a certificate of the right name from another CA ...
    (other / "ca.pem").write_bytes((pki / "ca.pem").read_bytes())  # ... trusting the run's CA
    base = {"secret_file": str(secret_file)}
    dec = KvLink(parse_config({**base, "listen": "127.0.0.1:0", "pki_dir": str(pki)}, "d0"))
    links = [dec]
    try:
        assert dec._server is not None
        peers = {"d0": f"127.0.0.1:{dec._server.port}"}

        def sender(extra):
            links.append(KvLink(parse_config({**base, "peers": peers, **extra}, "p0")))
            return links[-1]

        res, err = _push(sender({"pki_dir": str(pki)}), "d0", "t-ok")
        assert err is None and res.total_bytes == 5000
        assert bytes(_take(dec, "t-ok").layers[0]) == b"k" * 5000
        # Plain TCP with the right HMAC secret: refused (the receiver requires TLS).
        _, err = _push(sender({}), "d0", "t-plain")
        assert isinstance(err, OSError) and dec._server.stats.auth_failures >= 1
        # TLS with a certificate the run's CA did not sign: the receiver ends the handshake.
        _, err = _push(sender({"pki_dir": str(other)}), "d0", "t-other")
        assert isinstance(err, OSError)
        assert dec.take("t-plain") is None and dec.take("t-other") is None
        # A receiver whose certificate names another engine: the sender refuses to send to it.
        fake = KvLink(parse_config({**base, "listen": "127.0.0.1:0", "pki_dir": str(pki),
                                    "engine_id": "imposter"}, "x"))
        links.append(fake)
        assert fake._server is not None
        s = KvLink(parse_config({**base, "pki_dir": str(pki),
                                 "peers": {"d0": f"127.0.0.1:{fake._server.port}"}}, "p0"))
        links.append(s)
        _, err = _push(s, "d0", "t-fake")
        assert isinstance(err, ssl.SSLCertVerificationError) and "mismatch" in str(err)
        assert fake.take("t-fake") is None
    finally:
        for link in links:
            link.close()


def test_pki_dir_must_hold_the_engines_certificate(secret_file, tmp_path):
    with pytest.raises(ConnectorConfigError, match=r"ca\.pem"):
        parse_config({"secret_file": str(secret_file), "pki_dir": str(tmp_path)}, "d0")


def test_layerwise_feed_sends_layers_as_they_are_put(secret_file):
    base = {"secret_file": str(secret_file)}
    dec = KvLink(parse_config({**base, "listen": "127.0.0.1:0"}, "d0"))
    assert dec._server is not None
    pre = KvLink(parse_config({**base, "peers": {"d0": f"127.0.0.1:{dec._server.port}"}}, "p0"))
    try:
        done, seen = threading.Event(), []
        feed = pre.open("d0", "t-lw", 3, 300, lambda r, e: (seen.append((r, e)), done.set()))
        feed.put(LayerPayload(0, b"a" * 100))
        feed.put(LayerPayload(1, b"b" * 100))
        assert not done.wait(0.5)  # the transfer stays open until the last layer is handed over
        feed.put(LayerPayload(2, b"c" * 100))
        assert done.wait(30) and seen[0][1] is None and seen[0][0].total_bytes == 300
        got = _take(dec, "t-lw")
        assert got is not None and [bytes(x)[:1] for x in got.layers] == [b"a", b"b", b"c"]
    finally:
        pre.close()
        dec.close()
