"""`python -m fastweights.data.listops`: runs `main`, the command line."""

import sys

from fastweights.data.listops import main

sys.exit(main())
