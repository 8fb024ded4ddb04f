"""``python -m scaling`` runs the ``scaling`` command (as under ``torchrun -m scaling``)."""

import sys

from scaling.cli import main

sys.exit(main())
