import sys

from lc2d.cli import main

sys.exit(main())
