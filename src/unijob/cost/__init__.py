"""Cost: the dated price catalog, what a spec costs on each target, and the build-vs-buy break-even.

Needs no cloud SDK. See :mod:`unijob.cost.catalog` for the instance shapes and prices.
"""
