"""``python -m pyhall_mcp.cli``: the ``pyhall`` command."""

import sys

from . import main

sys.exit(main())
