"""Cost: the dated price catalog, what a spec costs on each target, and the build-vs-buy break-even.

Needs no cloud SDK. See :mod:`unijob.cost.catalog` for the instance shapes and prices.

The package is callable: ``unijob.cost(spec, ...)`` is :func:`unijob.cost.report.cost` (a
:class:`~unijob.cost.report.CostReport` with the rows ``unijob cost`` prints), while
``import unijob.cost.catalog`` and the other submodules keep working. :func:`breakeven` is
:func:`unijob.cost.report.breakeven`. Both load lazily (nothing heavy at import).
"""

import sys as _sys
import types as _types


class _CallableModule(_types.ModuleType):
    """``unijob.cost(spec)`` delegates to :func:`unijob.cost.report.cost`."""

    def __call__(self, spec, **kwargs):
        from unijob.cost.report import cost

        return cost(spec, **kwargs)


_sys.modules[__name__].__class__ = _CallableModule
