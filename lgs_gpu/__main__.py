"""``python -m lgs_gpu ...`` (and ``torchrun -m lgs_gpu ...``): the ``lgs-gpu`` command."""

import sys

from .app.cli import main

sys.exit(main())
