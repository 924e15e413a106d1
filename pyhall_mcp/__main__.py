"""``python -m pyhall_mcp``: run the gateway (the same as ``pyhall-mcp``)."""

import sys

from .gateway import main

sys.exit(main())
