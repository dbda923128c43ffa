"""The training command (``python -m emotion_lab``): one job or a Hydra sweep of them.

- ``cli``: the Hydra entry point; runs one job, writes its ``result.json``.
- ``job``: one job end to end: its MLflow run, data and model, the loop, test and logging.
- ``loop``: the training loop (``fit``: train an epoch, end an epoch) and evaluation.
- ``checkpoint``: atomic checkpoints and the loop's resumable state.
- ``optim``: optimizer and learning-rate schedule from the config.
- ``embedding_grad``: the reused embedding-gradient buffer (one CPU process).
- ``metrics`` and ``plots``: whole-split classification metrics, the confusion matrix.
- ``timing``: seconds per phase of a job, logged at its end.
- ``sweep``: the sweep's parent run, result files and closing summary (a Hydra callback).
- ``launch``: multi-process and cluster launches (Accelerate, submitit).
"""
