"""The open-loop sender: each planned request goes out at its time, whatever came before."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from prfaas.bench.http import AnyPool, ConnectError, ProtocolError, make_pool
from prfaas.bench.resume import send_resuming
from prfaas.bench.workload import PlannedRequest
from prfaas.errors import UsageError

ENDPOINTS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


@dataclass(frozen=True, slots=True)
class RequestResult:
    """What the client saw of one request (times in seconds; gaps between text chunks in itl_s)."""

    index: int
    send_s: float  # actual send time, relative to the start of the run
    input_tokens: int
    ok: bool
    error: str | None = None  # http_<status>, connect, timeout, disconnected, stream_error, ...
    detail: str | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    output_tokens: int = 0
    itl_s: tuple[float, ...] = ()
    text: str = ""  # the streamed text (the chaos harness checks it token for token)
    answers_429: int = 0  # 429s received (with --retry-429, those it waited out and resent)
    resumes: int = 0  # with --resume-streams: times the stream was cut and resumed

    @property
    def tpot_s(self) -> float | None:
        """Mean time per output token after the first: (last - first token) / (n - 1)."""
        if self.ttft_s is None or self.e2e_s is None or self.output_tokens < 2 or not self.itl_s:
            return None
        return sum(self.itl_s) / (self.output_tokens - 1)


@dataclass(slots=True)
class _Stream:
    """Parser state of one SSE response."""

    start_s: float
    first_s: float | None = None
    last_s: float | None = None
    chunks: int = 0
    usage_tokens: int | None = None
    done: bool = False
    error: str | None = None
    retry_after: str = ""  # the Retry-After header of a 429
    gaps: list[float] = field(default_factory=list)
    pieces: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)  # output token ids (return_token_ids)

    def feed(self, line: bytes) -> None:
        if not line.startswith(b"data:"):
            return
        data = line[5:].strip()
        if data == b"[DONE]":
            self.done = True
            return
        obj = msgspec.json.decode(data)
        if "error" in obj:
            self.error = str((obj["error"] or {}).get("message", obj["error"]))
            return
        if obj.get("usage"):
            self.usage_tokens = int(obj["usage"].get("completion_tokens", 0))
        choices = obj.get("choices") or ()
        self.ids.extend(int(t) for c in choices for t in c.get("token_ids") or ())
        texts = [_choice_text(c) for c in choices]
        if any(texts):
            self.pieces.extend(texts)
            now = time.perf_counter()
            if self.last_s is not None:
                self.gaps.append(now - self.last_s)
            self.first_s = self.first_s or now
            self.last_s = now
            self.chunks += 1


def _choice_text(choice: dict[str, Any]) -> str:
    if "delta" in choice:
        return (choice.get("delta") or {}).get("content") or ""
    return choice.get("text") or ""


def payload(req: PlannedRequest, model: str, endpoint: str, ignore_eos: bool,
            tag: bool = False, token_ids: bool = False) -> dict[str, Any]:
    """The request body. `tag` sends the plan index as `seed`: with temperature 0 it changes no
    token, and the router's decision log records it, so decisions join to plan (trace) rows.
    `token_ids` asks for each chunk's token ids (what --resume-streams sends back)."""
    body: dict[str, Any] = {"model": model, "max_tokens": req.max_tokens, "temperature": 0.0,
                            "stream": True, "stream_options": {"include_usage": True}}
    if token_ids:
        body["return_token_ids"] = True
    if ignore_eos:
        body["ignore_eos"] = True
    if tag:
        body["seed"] = req.index
    if endpoint == "chat":
        body["messages"] = [{"role": "user", "content": req.prompt()}]
    else:
        body["prompt"] = req.prompt()
    return body


async def _stream_into(pool: AnyPool, path: str, body: bytes, st: _Stream) -> tuple[int, str]:
    """POST and feed the SSE lines to `st`; (status, error body) when the status is not 200."""
    resp = await pool.post(path, body)
    try:
        if resp.status != 200:
            st.retry_after = resp.headers.get("retry-after", "")
            return resp.status, (await resp.read()).decode(errors="replace")[:300]
        rest = b""
        async for piece in resp.iter_bytes():
            *lines, rest = (rest + piece).split(b"\n")
            for line in lines:
                st.feed(line)
        return 200, ""  # an unterminated last line is a cut stream: `done` stays False
    finally:
        resp.release()


async def _send_honouring_429(pool: AnyPool, path: str, body: bytes, st: _Stream,
                              retry_429: bool) -> tuple[int, str, int]:
    """(status, error body, 429s seen); with `retry_429`, wait out each 429's Retry-After and send
    again (the caller's timeout bounds it all)."""
    answers = 0
    while True:
        status, text = await _stream_into(pool, path, body, st)
        if status != 429:
            return status, text, answers
        answers += 1
        if not retry_429:
            return status, text, answers
        wait = float(st.retry_after) if st.retry_after.replace(".", "", 1).isdigit() else 1.0
        await asyncio.sleep(wait)
        st.start_s = time.perf_counter()  # TTFT counts from the accepted attempt


async def send_one(pool: AnyPool, req: PlannedRequest, t0: float, model: str, endpoint: str,
                   ignore_eos: bool, timeout_s: float, tag: bool = False,
                   retry_429: bool = False, resume: bool = False) -> RequestResult:
    body = payload(req, model, endpoint, ignore_eos, tag, resume)
    path = ENDPOINTS[endpoint]
    start = time.perf_counter()
    answers = resumes = 0

    def fail(kind: str, detail: str | None) -> RequestResult:
        return RequestResult(req.index, start - t0, req.input_tokens, False, kind, detail,
                             e2e_s=time.perf_counter() - st.start_s, output_tokens=st.chunks,
                             text="".join(st.pieces), answers_429=answers, resumes=resumes)

    def first(data: bytes) -> Any:
        return _send_honouring_429(pool, path, data, st, retry_429)

    st = _Stream(start)
    try:
        async with asyncio.timeout(timeout_s):
            if resume:
                status, text, answers, resumes = await send_resuming(pool, path, body, st, first)
            else:
                status, text, answers = await first(msgspec.json.encode(body))
    except TimeoutError:
        return fail("timeout", f"no complete reply within {timeout_s} s")
    except ConnectError as exc:
        return fail("connect", str(exc))
    except (asyncio.IncompleteReadError, OSError) as exc:
        return fail("disconnected", repr(exc))
    except (ProtocolError, msgspec.DecodeError, AttributeError, TypeError, ValueError) as exc:
        return fail("bad_response", repr(exc))
    if status != 200:
        return fail(f"http_{status}", text)
    end = time.perf_counter()
    if st.error is not None or not st.done:
        return fail("stream_error" if st.error is not None else "incomplete", st.error)
    n_out = st.usage_tokens if st.usage_tokens is not None else st.chunks
    return RequestResult(req.index, start - t0, req.input_tokens, True,
                         ttft_s=(st.first_s or end) - st.start_s, e2e_s=end - st.start_s,
                         output_tokens=n_out, itl_s=tuple(st.gaps), text="".join(st.pieces),
                         answers_429=answers, resumes=resumes)


def normalize_url(url: str) -> str:
    """`http://host:port` from what a user types (a trailing /v1 or / is dropped); several
    comma-separated URLs (router replicas, tried in order on connection errors) stay a list."""
    if "," in url:
        return ",".join(normalize_url(u) for u in url.split(",") if u.strip())
    url = url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[:-3]
    if not url.startswith("http://"):
        raise UsageError(f"--url must be a plain http:// URL (no TLS), got {url!r}")
    return url


async def discover_model(url: str, timeout_s: float = 5.0) -> str:
    """The first model the server lists; a clear UsageError when the URL is not a live server.
    With several URLs, the first that answers."""
    if "," in url:
        urls = url.split(",")
        for other in urls[:-1]:
            with contextlib.suppress(UsageError):
                return await discover_model(other, timeout_s)
        return await discover_model(urls[-1], timeout_s)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as client:
            resp = await client.get("/v1/models")
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        raise UsageError(f"invalid --url {url!r}: {exc}") from exc
    except httpx.HTTPError as exc:
        raise UsageError(f"cannot reach {url} ({type(exc).__name__}: {exc or 'no reply'})") from exc
    if resp.status_code != 200:
        raise UsageError(f"{url} is not an OpenAI-compatible server (GET /v1/models -> "
                         f"HTTP {resp.status_code})")
    try:
        return str(resp.json()["data"][0]["id"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise UsageError(f"{url}: GET /v1/models returned no model list") from exc


async def run_plan(url: str, plan: Sequence[PlannedRequest], *, model: str, endpoint: str,
                   timeout_s: float, ignore_eos: bool = True,
                   on_done: Callable[[RequestResult], None] | None = None,
                   tag: bool = False, retry_429: bool = False, resume_streams: bool = False,
                   ) -> tuple[list[RequestResult], float]:
    """Send `plan` open-loop; returns the results (plan order) and the run's wall time (s).
    `retry_429`: honour Retry-After and resend a shed request (else a 429 is its outcome).
    `resume_streams`: a stream cut after its first token is resumed from its token ids."""
    pool = make_pool(url)
    t0 = time.perf_counter()

    async def one(req: PlannedRequest) -> RequestResult:
        result = await send_one(pool, req, t0, model, endpoint, ignore_eos, timeout_s, tag,
                                retry_429, resume_streams)
        if on_done is not None:
            on_done(result)
        return result

    try:
        tasks = []
        for req in plan:
            delay = t0 + req.send_at_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(req)))
        results = await asyncio.gather(*tasks)
    finally:
        pool.close()
    return list(results), time.perf_counter() - t0
