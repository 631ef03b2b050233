import sys

from unijob_ray_gang import main

sys.exit(main())
