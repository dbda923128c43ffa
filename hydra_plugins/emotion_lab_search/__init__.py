"""emotion_lab's Hydra sweeper for hyperparameter search on Optuna (hparams_search=optuna).

``hydra_plugins`` is a namespace package: Hydra imports every module under it and finds the
sweeper, whose configs (the sampler and pruner groups) are registered in ``config``.
"""
