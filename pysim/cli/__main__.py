"""``python -m pysim.cli``: the same as the ``s2fp8`` command."""
import sys

from pysim.cli import main

sys.exit(main())
