"""``python -m vanishing_depth.cli ...`` (and ``accelerate launch -m vanishing_depth.cli pretrain ...``)."""

import sys

from . import main

sys.exit(main())
