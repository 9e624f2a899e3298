"""The gridloop service, split by role into three subpackages.

* :mod:`controller.runtime` — what runs on a site: config, strategies, the one
  control cycle, the controller, the service and its summary, signals, and the
  embedded-default simulator launcher.
* :mod:`controller.ops` — operator I/O around a run: dashboard and status
  lines, Prometheus metrics, CSV recording and reports, logging, output-path
  checks.
* :mod:`controller.lab` — lab tools that drive the runtime's code against the
  simulator: ``gridloop replay`` (control quality) and ``gridloop bench``
  (dispatch latency).

Beside them: :mod:`controller.cli` (the ``gridloop`` command),
:mod:`controller.run` (``gridloop run``: runtime plus operator I/O),
:mod:`controller.cli_args` (the one-line-error argument parser shared by every
sub-command) and :mod:`controller.errors` (every user-facing error, all
deriving from :class:`actors.GridloopError`).

Imports point one way: ``lab`` and ``ops`` may use ``runtime``; ``runtime``
uses neither. Only ``lab`` and the embedded-default launcher
(:mod:`controller.runtime.embedded`) import :mod:`simulator`.
"""
