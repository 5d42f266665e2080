"""``python -m styleswap_ext`` = the ``styleswap`` command line."""

from .cli import main

raise SystemExit(main())
