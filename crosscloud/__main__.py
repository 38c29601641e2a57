import sys

from crosscloud.cli import main

sys.exit(main())
