"""`python -m prfaas.server [PORT]`: the API over FakeBackend + a sample dashboard, for dev."""

from __future__ import annotations

import sys

import uvicorn

from prfaas.server import FakeBackend, SampleDashboardSource, create_app


def main(argv: list[str]) -> None:
    port = int(argv[0]) if argv else 8000
    app = create_app(FakeBackend(token_delay_s=0.02), model_name="fake", max_context_tokens=8192,
                     dashboard=SampleDashboardSource())
    print(f"serving FakeBackend on http://127.0.0.1:{port}  (dashboard: /dashboard)")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
