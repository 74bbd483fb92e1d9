"""Allow ``python -m exporters``."""

from exporters.cli import main

raise SystemExit(main())
