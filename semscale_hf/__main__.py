"""`python -m semscale_hf`: the `semscale` command."""

import sys

from .cli import main


sys.exit(main())
