"""Hyperparameter search on Optuna: the search space from Hydra's sweep grammar, the study and its
storage, and the trial a job reports to each epoch (so that the pruner can stop it).

The sweeper that drives a search is the Hydra plugin in ``hydra_plugins/emotion_lab_search``.
"""
