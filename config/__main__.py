"""`python -m config markdown|toml`: print the README table or the example config."""

import sys

from config.docs import main

sys.exit(main())
