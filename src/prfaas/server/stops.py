"""Stop strings at the edge: cut the output at the first match, holding back a possible start."""

from __future__ import annotations


def held_suffix(buf: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of `buf` that begins some stop string (it must wait)."""
    keep = 0
    for stop in stops:
        for k in range(min(len(stop) - 1, len(buf)), keep, -1):
            if buf.endswith(stop[:k]):
                keep = k
                break
    return keep


def first_stop(buf: str, stops: tuple[str, ...]) -> int:
    """Where the first stop string starts in `buf`; -1 when none does."""
    hits = [i for i in (buf.find(s) for s in stops) if i >= 0]
    return min(hits) if hits else -1


class StopMatcher:
    """Cuts output at the first stop string, holding back text that may begin one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.held = ""

    def feed(self, text: str) -> tuple[str, bool]:
        buf = self.held + text
        cut = first_stop(buf, self.stops)
        if cut >= 0:
            self.held = ""
            return buf[:cut], True
        keep = held_suffix(buf, self.stops)
        self.held = buf[len(buf) - keep :]
        return buf[: len(buf) - keep], False

    def flush(self) -> str:
        out, self.held = self.held, ""
        return out


class TokenStopMatcher:
    """StopMatcher in whole tokens, for requests that get their token ids: a token's id goes out
    with its text, never before or apart from it, so the ids a client holds are exactly the text
    it holds; a stream cut anywhere then resumes from those ids with no text lost or repeated."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.held: list[tuple[str, int]] = []

    def feed(self, text: str, token_id: int | None) -> tuple[str, tuple[int, ...], bool]:
        if token_id is not None:
            self.held.append((text, token_id))
        buf = "".join(t for t, _ in self.held)
        cut = first_stop(buf, self.stops) if self.stops else -1
        if cut >= 0:  # the generation ends here: every token produced so far is reported
            ids = tuple(i for _, i in self.held)
            self.held = []
            return buf[:cut], ids, True
        limit = len(buf) - (held_suffix(buf, self.stops) if self.stops else 0)
        n, pos = 0, 0
        while n < len(self.held) and pos + len(self.held[n][0]) <= limit:
            pos += len(self.held[n][0])
            n += 1
        out, self.held = self.held[:n], self.held[n:]
        return "".join(t for t, _ in out), tuple(i for _, i in out), False

    def flush(self) -> tuple[str, tuple[int, ...]]:
        out, self.held = self.held, []
        return "".join(t for t, _ in out), tuple(i for _, i in out)
