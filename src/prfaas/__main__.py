"""Allow `python -m prfaas`."""

from prfaas.cli import main

raise SystemExit(main())
