"""Tracking runs by hand: the per-thread stack of active runs, how runs start, nest
and end (``runs``), and ``log_metric`` and friends (``logging_api``). This is what
the user's calls to ``mlhooks.start_run`` and ``mlhooks.log_*`` reach, and what
autologging opens its runs through.

May import: ``mlhooks.capture``, ``mlhooks.delivery``, ``mlhooks.backends`` and
``mlhooks.core``.
"""
