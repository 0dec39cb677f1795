"""``python -m hemotune``: the same as the ``hemotune`` command."""

import sys

from hemotune.cli import main

sys.exit(main())
