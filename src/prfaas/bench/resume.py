"""--resume-streams: a stream cut after its first token is sent again with the token ids it
delivered (`resume_token_ids`, docs/reliability.md) to the same URL, and the pieces stitched."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from prfaas.bench.http import AnyPool, ConnectError

if TYPE_CHECKING:
    from prfaas.bench.client import _Stream

MAX_RESENDS = 6  # resends of one request (after a cut, or after a refused resend)
BACKOFF_S = 0.25  # before resending after a refusal (doubling); a 429's Retry-After wins
RETRY = frozenset({429, 502, 503})  # a resend refused while the deployment heals: try again
CUT = (asyncio.IncompleteReadError, OSError)  # the connection broke mid-reply

First = Callable[[bytes], Awaitable[tuple[int, str, int]]]


def _cut(st: _Stream, status: int) -> bool:
    """The reply had streamed tokens and ended with neither [DONE] nor an in-band error."""
    return status == 200 and bool(st.ids) and not st.done and st.error is None


def _wait_s(st: _Stream, tries: int) -> float:
    if st.retry_after.replace(".", "", 1).isdigit():
        return float(st.retry_after)
    return float(BACKOFF_S * 2 ** min(tries, 4))


async def send_resuming(pool: AnyPool, path: str, body: dict[str, Any], st: _Stream,
                        first: First) -> tuple[int, str, int, int]:
    """(status, error body, 429s of the first send, resumes). `first` sends the original request;
    each resend carries every token id received so far (the server continues after them) and
    `st` keeps accumulating text, ids and gaps, so the result is the stitched stream."""
    try:
        status, text, answers = await first(msgspec.json.encode(body))
    except ConnectError:
        raise
    except CUT:
        if not st.ids:
            raise  # nothing delivered: the caller reports the failure as it was
        status, text, answers = 200, "", 0
    cut, resumes, tries = _cut(st, status), 0, 0
    while cut and tries < MAX_RESENDS:
        tries += 1
        st.done, st.error, st.retry_after = False, None, ""
        resend = msgspec.json.encode({**body, "resume_token_ids": list(st.ids)})
        try:
            status, text = await _post(pool, path, resend, st)
        except ConnectError:
            raise  # no replica takes connections: nothing to resume on
        except CUT:
            status, text = 200, ""
        if status == 200:
            resumes += 1
            cut = _cut(st, status)
        elif status in RETRY:
            await asyncio.sleep(_wait_s(st, tries))
        else:
            cut = False
    return status, text, answers, resumes


async def _post(pool: AnyPool, path: str, payload: bytes, st: _Stream) -> tuple[int, str]:
    from prfaas.bench.client import _stream_into  # (client imports this module)

    return await _stream_into(pool, path, payload, st)
