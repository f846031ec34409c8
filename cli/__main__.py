"""`python -m cli`: the `guardlink` command line."""

import sys

from cli.main import main

sys.exit(main())
