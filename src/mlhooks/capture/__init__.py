"""Capture: what a run records about its surroundings and its inputs, apart from what
the user logs. The run context (``context``, ``gitinfo``), system metrics sampled
beside a run (``system_metrics``), dataset fingerprints (``datasets``) and a model's
bytes taken when it is reported (``models``).

May import: ``mlhooks.delivery`` (staging), ``mlhooks.backends`` and ``mlhooks.core``.
"""
