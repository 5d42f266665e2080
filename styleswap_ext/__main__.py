"""``python -m styleswap_ext`` = the ``styleswap`` command line."""

from .apps.cli import main

raise SystemExit(main())
