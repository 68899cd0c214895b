"""``python -m rankssl`` is the ``rankssl`` command."""

import sys

from rankssl.cli import main

sys.exit(main())
