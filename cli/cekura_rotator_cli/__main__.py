"""`python -m cekura_rotator_cli`, the same as the `cekura-rotator` command."""

import sys

from cekura_rotator_cli.app import main

sys.exit(main())
