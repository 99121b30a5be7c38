"""Report stage: a run's report.md with plots, from its files.

``fidan.report`` names both this package and the ``fidan report`` command: the package is callable.
"""

from fidan.runtime.callable_module import make_callable

make_callable(__name__, "fidan.report.report:report")
