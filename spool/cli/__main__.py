"""``python -m spool.cli``: the ``spool`` command."""

import sys

from spool.cli import main

sys.exit(main())
