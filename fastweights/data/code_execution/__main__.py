"""`python -m fastweights.data.code_execution`: runs `main`, the command line."""

import sys

from fastweights.data.code_execution import main

sys.exit(main())
