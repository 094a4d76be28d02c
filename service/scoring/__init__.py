"""Offline batch scoring: ``lc2d score`` on one machine (``local``) or on Ray Data (``ray``).

Modules: ``sources`` (``.npy`` / ``.npz`` / image folders read a batch at a time), ``images``
(one picture -> one model input), ``writer`` (the output ``.npy`` written incrementally),
``scorer`` (contract checks and one batch through the server's runtime), ``engines`` (the
:class:`~service.scoring.engines.Engine` protocol and the table of engines by name), ``local``
and ``ray_engine`` (how each engine runs its batches), ``job`` (the whole job, summary
included). Ray is imported only by ``ray_engine``.
"""

from service.scoring.job import ScoringJob, ScoringSummary, run_scoring_job

__all__ = ["ScoringJob", "ScoringSummary", "run_scoring_job"]
