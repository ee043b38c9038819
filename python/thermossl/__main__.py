"""``python -m thermossl``: the command line (see thermossl.cli)."""
import sys

from .cli import main

sys.exit(main())
