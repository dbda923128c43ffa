"""The MLflow store, for every command: where it is, how to open it, and what lives in it.

- ``names``: every tag, param, metric and artifact name that jobs write and readers look up
  (the contract between them), the score tuples, plus the Runs-view link of a sweep.
- ``connection``: resolving a store URI, the sqlite file lock, opening a store for writing
  (creating the experiment) or for reading (never creating anything).
- ``server``: a remote tracking server's reachability probe and bounded retries.
- ``writer``: the run lifecycle of training jobs and sweeps (``tracked_run``, ``RunLogger``, a
  job's tags, resuming or skipping it, reopening a run).
- ``reader``: what the reading commands share: a run by id, a logged model, the best run,
  configurations over seeds and the pair that ``compare`` and ``attention`` set side by side.

Readers (compare, predict, attention) import from ``names``, ``connection`` and ``reader``,
never from ``writer``.
"""
