"""Reading runs back: ``search_runs``/``get_metric_history`` in MLflow's conventions
(``search``), run comparison as a table and curves (``compare``) and the
self-contained HTML report (``report``). Nothing here writes a run.

May import: ``mlhooks.delivery`` (to resolve and flush backends), ``mlhooks.backends``
and ``mlhooks.core``; it is independent of ``mlhooks.autologging``.
"""
