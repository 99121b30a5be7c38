import sys

from fidan.cli import main

sys.exit(main())
