"""The ``unijob`` command line. ``main()`` is the console-script entry point.

Commands are loaded lazily (see :mod:`unijob.cli.main`): ``unijob --help`` imports click and this
package only.
"""

from unijob.cli.main import main

__all__ = ["main"]
