"""HAProxy in front of router replicas: its config (written in the run folder) and command line.

HTTP mode; each replica is health-checked on `/health` (a router that cannot serve answers 503
and leaves the rotation); a request whose connection to a replica fails, or that gets no byte of
a reply (the replica died before answering), is sent again to another replica (`retries`,
`option redispatch`, `retry-on conn-failure empty-response`): the client sees nothing. A stream
that had started when its replica died cannot be replayed by HAProxy and is cut.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

INSTALL_HINT = "apt-get install haproxy"
HEADROOM = 64 << 10  # request line and headers, beyond the body


def haproxy_binary() -> str | None:
    return shutil.which("haproxy")


def free_port(host: str) -> int:
    """A port free right now (HAProxy cannot report one it picked; a clash fails its start)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def render_config(
    bind: tuple[str, int], replicas: list[tuple[str, int]], timeout_s: float, max_body: int
) -> str:
    """The haproxy.cfg text: one frontend on `bind`, one backend server per replica."""
    server_timeout = f"{int(timeout_s + 30)}s"  # a stream may last the router's request timeout
    lines = [
        "global",
        "    maxconn 4096",
        # HAProxy retries only a request that fits in one buffer (the default 16 KiB is less
        # than a long prompt): room for the largest body the routers accept, plus headers.
        f"    tune.bufsize {max_body + HEADROOM}",
        "defaults",
        "    mode http",
        "    option http-buffer-request",  # the body is kept, so a retry can resend it
        "    timeout connect 1s",
        # A replica busy under load may answer /health late (500 ms, the check interval, marked
        # the only live replica down while the other restarted: HAProxy then answered 503 to
        # everything); a dead one refuses the connection and is marked down at once anyway.
        "    timeout check 2s",
        "    timeout http-request 30s",
        f"    timeout client {server_timeout}",
        f"    timeout server {server_timeout}",
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response",
        "frontend api",
        f"    bind {bind[0]}:{bind[1]}",
        "    default_backend routers",
        "backend routers",
        "    balance leastconn",
        "    option httpchk GET /health",
        "    http-check expect status 200",
        "    default-server inter 500ms fastinter 200ms fall 2 rise 1",
    ]
    lines += [f"    server r{i} {host}:{port} check" for i, (host, port) in enumerate(replicas)]
    return "\n".join(lines) + "\n"


def write_config(
    run_dir: Path,
    bind: tuple[str, int],
    replicas: list[tuple[str, int]],
    timeout_s: float,
    max_body: int,
) -> Path:
    path = run_dir / "haproxy.cfg"
    path.write_text(render_config(bind, replicas, timeout_s, max_body))
    return path


def command(binary: str, config: Path) -> list[str]:
    """Foreground (`-db`), so the supervisor sees it exit and can restart it."""
    return [binary, "-db", "-f", str(config)]
