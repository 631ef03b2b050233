import sys

from unijob.serve.runner import main

sys.exit(main())
