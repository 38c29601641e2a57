"""`python -m crosscloud`: the CLI entry point (see crosscloud/cli.py)."""

import sys

from crosscloud.cli import main

sys.exit(main())
