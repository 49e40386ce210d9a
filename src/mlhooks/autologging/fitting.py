"""What an integration uses to report one training call.

A :class:`FitSession` opens a managed run when no run is active (named after what is
being fitted), reports the fit's events through the hooks, sanitizes whatever it is
given (autologging never raises on bad values: one warning, a usable value), and
ends the managed run FINISHED, FAILED or KILLED.

:class:`FitHandler` is the usual way to use it from a patch: subclass it, say what the
fit is in :meth:`FitHandler.describe`, report results in :meth:`FitHandler.finish`. It
runs the one lifecycle every fit has (track or not, start, the original, finish or
fail, end), so that a handler only fills in its steps.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mlhooks.autologging.patching import Call, CallHandler
from mlhooks.capture import datasets, models
from mlhooks.core import activity, validation
from mlhooks.core.errors import report_internal_error
from mlhooks.core.host import host
from mlhooks.core.options import FrameworkOptions
from mlhooks.core.types import DatasetInfo, Fit, ModelArtifact, RunInfo, RunStatus, now_ms
from mlhooks.delivery import service_client, staging, tasks
from mlhooks.tracking.runs import current_run, end_run, new_params, open_run, run_of_main_thread


def _settings(framework: str) -> FrameworkOptions:
    from mlhooks.autologging.autolog import settings_for

    return settings_for(framework)


class FitSession:
    """One tracked training call. Every method is safe to call: problems warn once."""

    def __init__(
        self,
        framework: str,
        name: str,
        *,
        model: Any = None,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        settings: FrameworkOptions | None = None,
        run: RunInfo | None = None,
        parent: RunInfo | None = None,
        run_id: str | None = None,
    ) -> None:
        """``run``: log into this open run, which the caller ends (a ``partial_fit``
        loop's run). ``parent``: open a child run of it, without making it the active
        run, and end it with the session (see :meth:`child`). Neither: the active run,
        else a managed run of its own; ``run_id`` names the stored run that managed run
        continues (a resumed training)."""
        self.framework = framework
        self.name = name
        self.settings = settings if settings is not None else _settings(framework)
        self._model = model
        self._params = dict(params or {})
        self._tags = dict(tags or {})
        self.fit: Fit | None = None
        self._managed = False
        self._running = False
        """Counted among the fits that background tasks wait for."""
        self._outer = False
        """Counted among the fits that pool workers' fits belong to."""
        self._run = run
        self._parent = parent
        self._run_id = run_id

    @property
    def active(self) -> bool:
        """False when nothing is tracked (``exclusive=True`` inside a user's run)."""
        return self.fit is not None

    def start(self) -> Fit | None:
        """Open the run if needed and report ``on_fit_start``."""
        # Counted as running from here, so that what the run's start sets off in the
        # background (the context capture) already sees a fit running.
        self._outer = activity.fit_started()
        self._running = True
        try:
            fit = self._open()
        except BaseException:
            self._stop_running()
            raise
        if fit is None:
            self._stop_running()
        return fit

    def _stop_running(self) -> None:
        if self._running:
            self._running = False
            activity.fit_ended(self._outer)

    def _open(self) -> Fit | None:
        if self._run is not None:
            return self._report_start(self._run, self._run)
        if self._parent is not None:
            child = open_run(
                self.name,
                managed=True,
                parent=self._parent,
                activate=False,
                tags=self.settings.extra_tags,
            )
            self._managed = True
            return self._start_reporting(child.info, self._parent)
        parent = current_run()
        if parent is not None and self.settings.exclusive and not parent.managed:
            return None
        if parent is not None and parent is run_of_main_thread():
            # A fit in a thread of its own: a child of the main thread's run, so that
            # fits running side by side do not write over each other's params.
            child = open_run(self.name, managed=True, parent=parent, tags=self.settings.extra_tags)
            self._managed = True
            return self._start_reporting(child.info, parent)
        if parent is None:
            run = open_run(
                self.name, managed=True, tags=self.settings.extra_tags, run_id=self._run_id
            ).info
            self._managed = True
        else:
            run = parent
        return self._start_reporting(run, parent)

    def _start_reporting(self, run: RunInfo, parent: RunInfo | None) -> Fit:
        try:
            return self._report_start(run, parent)
        except BaseException:
            if self._managed:  # leave no managed run open: the fit runs untracked
                end_run(RunStatus.FAILED, run=run)
            self.fit = None
            raise

    def _report_start(self, run: RunInfo, parent: RunInfo | None) -> Fit:
        tags = {"mlhooks.framework": self.framework, **self._tags}
        if parent is not None and self.settings.extra_tags:
            tags.update(self.settings.extra_tags)
        self.fit = Fit(self.framework, self.name, run, model=self._model)
        self._model = None  # held by the fit alone, which may let go of it
        self.fit.params = self._clean_params(self._params)
        self.fit.tags = self._clean_tags(tags)
        fresh = new_params(run, self.fit.params, strict=False)
        if fresh:
            host.emit("on_params", run, fresh)
        host.emit("on_tags", run, self.fit.tags)
        host.emit("on_fit_start", self.fit)
        return self.fit

    # -- reporting --------------------------------------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        if self.fit is None:
            return
        fresh = new_params(self.fit.run, self._clean_params(params), strict=False)
        if fresh:
            self.fit.params.update(fresh)
            host.emit("on_params", self.fit.run, fresh)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.fit is not None and tags:
            host.emit("on_tags", self.fit.run, self._clean_tags(tags))

    def log_metrics(
        self, metrics: Mapping[str, Any], step: int = 0, timestamp: int | None = None
    ) -> None:
        """Step-level (or final) values at ``step``."""
        if self.fit is None:
            return
        clean = self._clean_metrics(metrics)
        if clean:
            step = validation.step_value(step, strict=False)
            if timestamp is not None:
                timestamp = validation.timestamp_value(timestamp, strict=False)
            host.emit("on_metrics", self.fit.run, clean, step, timestamp or now_ms())

    def epoch_end(self, epoch: int, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Epoch-level values (stored at ``step``, the epoch unless given)."""
        if self.fit is None:
            return
        clean = self._clean_metrics(metrics)
        step = epoch if step is None else validation.step_value(step, strict=False)
        if clean:
            host.emit("on_metrics", self.fit.run, clean, step, now_ms())
        host.emit("on_epoch_end", self.fit, epoch, step, clean)

    def log_dataset(
        self, data: Any, name: str | None = None, context: str = "train", source: str | None = None
    ) -> None:
        """Fingerprint ``data`` (or report a :class:`DatasetInfo` the integration built),
        when ``log_datasets`` is on."""
        if self.fit is None or not self.settings.log_datasets:
            return
        if isinstance(data, DatasetInfo):
            host.emit("on_dataset", self.fit.run, data)
            return
        try:
            info = datasets.fingerprint(data, name=name, context=context, source=source)
        except TypeError as error:
            report_internal_error(f"{self.framework} dataset fingerprint", error)
            return
        host.emit("on_dataset", self.fit.run, info)

    def expect_model(self, flavor: str, modules: Sequence[str] = ()) -> None:
        """Say, as the fit starts, that it will report a model of ``flavor`` whose
        rebuilding needs ``modules`` (its framework's, e.g. ``("torch",
        "lightning.pytorch")``; only those imported here already count), when
        ``log_models`` is on. Where a writer service stores the models, its backends
        import them and what they need to save such a model while the fit trains (once
        it may start), rather than at the fit's end; nothing else changes, and a module
        that cannot be imported there is skipped."""
        if self.fit is None or not self.settings.log_models:
            return
        try:
            service_client.expect_model(flavor, modules)
        except Exception as error:  # noqa: BLE001 - a warm-up never breaks the fit
            report_internal_error(f"{self.framework} model warm-up", error)

    def log_model(
        self, model: Any, name: str = "model", flavor: str | None = None, **metadata: Any
    ) -> ModelArtifact | None:
        """Capture ``model`` now and report it, when ``log_models`` is on; the captured
        :class:`ModelArtifact` (None when models are not logged), whose bytes other
        background work may reuse instead of serializing the model again.

        Pass ``sample_input`` (a few rows) for backends to infer a signature from; the
        ``log_input_examples`` and ``log_model_signatures`` settings travel along as
        ``log_input_example`` and ``log_signature``, and ``registered_model_name``
        (when set) as itself. A model that cannot be captured
        (it holds a lock, a generator, ...) is reported with the reason only, so that
        backends set it aside where ``mlhooks sync --rejected`` lists it."""
        if self.fit is None or not self.settings.log_models:
            return None
        metadata.setdefault("log_input_example", self.settings.log_input_examples)
        metadata.setdefault("log_signature", self.settings.log_model_signatures)
        if self.settings.registered_model_name:
            metadata.setdefault("registered_model_name", self.settings.registered_model_name)
        try:
            artifact = models.capture(model, name, flavor=flavor, **metadata)
        except ValueError as error:  # the user's model, not our bug: set aside with why
            artifact = models.unsaveable(model, name, str(error), flavor=flavor, **metadata)
        host.emit("on_model_saved", self.fit.run, artifact)
        return artifact

    def log_artifact(self, local_path: str, artifact_path: str | None = None) -> None:
        """Keep a file with the fit's run (a snapshot is taken now). Safe from any
        thread, also after the fit ended: a plot drawn in the background lands too."""
        if self.fit is None:
            return
        artifact_path = validation.check_artifact_path(artifact_path, strict=False)
        try:
            snapshot = staging.stage_or_keep(local_path)
        except OSError as error:
            report_internal_error(f"{self.framework} artifact", error)
            return
        host.emit("on_artifact", self.fit.run, snapshot, artifact_path)

    def child(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> FitSession:
        """A started session in a new child run of this session's run (a search
        candidate, say), which does not become the active run; ``end()`` ends it."""
        child = FitSession(
            self.framework,
            name,
            params=params,
            tags=tags,
            settings=self.settings,
            parent=self.fit.run if self.fit is not None else None,
        )
        if self.fit is not None:
            child.start()
        return child

    def model_saved(self, artifact: ModelArtifact) -> None:
        """Report a model the integration captured itself (a checkpoint file, say)."""
        if self.fit is not None and self.settings.log_models:
            host.emit("on_model_saved", self.fit.run, artifact)

    def in_background(self, task: Callable[[Path], None], artifact_path: str | None = None) -> None:
        """Run ``task(directory)`` on mlhooks' background worker; the files it writes
        into ``directory`` are logged to this fit's run under ``artifact_path``. For
        work too slow for the training thread (charts, tables): give the task what it
        needs captured now, not live objects that training may still change. The run's
        end is stored after the task's files; the training thread never waits."""
        if self.fit is not None:
            artifact_path = validation.check_artifact_path(artifact_path, strict=False)
            tasks.submit(self.fit.run, task, artifact_path, f"{self.framework} background task")

    def model_in_background(
        self,
        model: Any,
        write: Callable[[Path], None],
        name: str = "model",
        flavor: str | None = None,
        **metadata: Any,
    ) -> None:
        """Report ``model`` as the files ``write(folder)`` saves on mlhooks' background
        worker, when ``log_models`` is on: for a model too slow to save on the training
        thread (Transformers' ``save_pretrained``). Capture what ``write`` needs now
        (the weights, not the live model that training may still change). ``folder`` is
        a fresh folder in the staging area; what ``write`` puts there goes to every
        backend by its path, never copied again, as a :class:`ModelArtifact` of format
        ``directory`` named ``name``, of ``flavor`` (else told by ``model``'s class),
        with ``metadata`` (its ``class`` and, when set, ``registered_model_name`` added
        as :meth:`log_model` does). The run's end is stored after it; the training
        thread never waits. ``model`` itself is not kept."""
        if self.fit is None or not self.settings.log_models:
            return
        if self.settings.registered_model_name:
            metadata.setdefault("registered_model_name", self.settings.registered_model_name)
        metadata.setdefault("class", models.class_name(model))
        artifact = ModelArtifact(
            name=name,
            flavor=flavor or models.infer_flavor(model),
            format=ModelArtifact.DIRECTORY,
            metadata=metadata,
        )
        tasks.submit_model(self.fit.run, write, artifact, f"{self.framework} model {name!r}")

    def end(self, error: BaseException | None = None) -> None:
        """Report ``on_fit_end`` and end the run if this session opened it."""
        if self.fit is None:
            return
        self.fit.error = error
        try:
            host.emit("on_fit_end", self.fit)
        finally:
            self._stop_running()
            if self._managed:
                end_run(RunStatus.for_exception(error), run=self.fit.run)

    # -- sanitizing -------------------------------------------------------------------------

    def _clean_params(self, params: Mapping[str, Any]) -> dict[str, str]:
        return validation.clean_entries(params, "param", strict=False)

    def _clean_tags(self, tags: Mapping[str, Any]) -> dict[str, str]:
        return validation.clean_entries(tags, "tag", strict=False)

    def _clean_metrics(self, metrics: Mapping[str, Any]) -> dict[str, float]:
        return validation.clean_metrics(metrics, strict=False)


class FitHandler(CallHandler):
    """A :class:`CallHandler` that tracks each outermost call as one fit.

    Subclasses implement :meth:`describe` and usually :meth:`finish`. Around each call
    the steps run in this order, each optional but :meth:`describe`:

    1. :meth:`track` decides whether this call is tracked at all (no: nothing else
       runs, the original runs as if unpatched);
    2. :meth:`new_session` builds the call's :class:`FitSession` (by default from
       :meth:`describe`), which is then started. A session that does not become
       active (``exclusive`` inside a user's run) tracks nothing: no other step runs;
    3. :meth:`started`, before the original;
    4. the original; then :meth:`finish` if it returned;
    5. the session ends (FINISHED, FAILED or KILLED), then :meth:`ended` runs.

    If :meth:`started` raises, the session ends at once, the original runs untracked
    and neither :meth:`finish` nor :meth:`ended` runs: undo in :meth:`started` what it
    did before raising, or take what needs undoing last.
    """

    framework: str = ""

    def track(self, call: Call) -> bool:
        """Whether to track this call (e.g. not a fit that belongs to a bigger one
        the framework runs on a helper thread). True by default."""
        return True

    def describe(self, call: Call) -> tuple[str, Mapping[str, Any]]:
        """The fit's name and params, from the intercepted call."""
        raise NotImplementedError

    def new_session(self, call: Call) -> FitSession:
        """The call's session, not started yet: by default named and with the params
        that :meth:`describe` gives, and ``call.instance`` as the model. Override to
        add tags, or to log into a run of your own (``FitSession(run=...)``)."""
        name, params = self.describe(call)
        return FitSession(self.framework, name, model=call.instance, params=params)

    def started(self, session: FitSession, call: Call) -> None:
        """Runs after the fit started and before the original (log datasets here)."""

    def finish(self, session: FitSession, call: Call, result: Any) -> None:
        """Runs after the original returned: log metrics and the model here."""

    def ended(self, session: FitSession, call: Call, error: BaseException | None) -> None:
        """Runs last, after the session ended, whether the original returned (``error``
        is None; also when :meth:`finish` failed) or raised ``error``: release what
        :meth:`started` took."""

    # -- the lifecycle, on CallHandler's three steps ---------------------------------------

    def before(self, call: Call) -> None:
        if not self.track(call):
            return
        session = self.new_session(call)
        session.start()
        if not session.active:
            return
        try:
            self.started(session, call)
        except BaseException:
            session.end()  # the original then runs untracked; leave no run open
            raise
        call.state["session"] = session

    def after(self, call: Call, result: Any) -> None:
        session: FitSession | None = call.state.get("session")  # set once tracked
        if session is None:
            return
        try:
            self.finish(session, call, result)
        finally:
            self._end(session, call, None)

    def failed(self, call: Call, error: BaseException) -> None:
        session: FitSession | None = call.state.get("session")
        if session is not None:
            self._end(session, call, error)

    def _end(self, session: FitSession, call: Call, error: BaseException | None) -> None:
        try:
            session.end(error)
        finally:
            self.ended(session, call, error)
