"""``python -m vemkit.cli``: the ``vemkit`` command."""

import sys

from . import main

sys.exit(main())
