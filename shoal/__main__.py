"""`python -m shoal serve ...`: the same as the `shoal` console script."""

from shoal.app.cli import main

raise SystemExit(main())
