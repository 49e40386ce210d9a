import sys

from mlhooks.cli import main

sys.exit(main())
