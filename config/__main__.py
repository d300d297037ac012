"""`python -m shoal.config markdown|toml`: print the README table or the example config."""

import sys

from shoal.config.docs import main

sys.exit(main())
