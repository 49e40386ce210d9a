"""Recording and delivery: the built-in recorder turns event hooks into backend
operations (``recorder``), and each backend's lane queues them and stores them on a
writer thread (``lanes``), which batches them (``batching``), spills past its memory
limit (``overflow``), retries (``deliverer``), spools (``spooler``, ``spool``) and
yields to training (``pacing``), with files snapshotted when
reported (``staging``), slow work of a fit run in the background (``tasks``), the
backends of a run resolved by name (``selection``) and the built-in plugins that tie
these to the plugin host (``builtins``).

May import: ``mlhooks.backends`` and ``mlhooks.core``.
"""
