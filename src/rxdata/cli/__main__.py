"""``python -m rxdata.cli``: the same as the ``rxdata`` command."""

import sys

from rxdata.cli import main

sys.exit(main())
