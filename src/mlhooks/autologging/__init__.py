"""Autologging: ``autolog()`` and its post-import hooks (``autolog``), the
``Integration`` base class a framework plugin subclasses (``integration``), safe and
reversible patches on wrapt that obey the safety rules (``patching``), and the
``FitSession``/``FitHandler`` through which a patch reports one fit (``fitting``).

May import: ``mlhooks.tracking`` and every layer below it.
"""
