"""`python -m pulse.cli ...`, as the supervisor, bench, soak and the tests start it."""
import sys

from pulse.cli import main

sys.exit(main())
