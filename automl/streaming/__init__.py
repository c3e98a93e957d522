"""The streaming data mode: tables bigger than the driver, read and transformed by Ray Data.

``data_mode="auto"`` picks it from the input's size and the memory Ray reports
(:mod:`automl.streaming.mode`). In this mode the table stays a ``ray.data.Dataset``: exact figures
come from a streamed pass (:mod:`~automl.streaming.stats`), a seeded hash of each row splits it
(:mod:`~automl.streaming.split`), kinds, preprocessing and the search's trials work on a bounded
uniform sample, the finalists train on every row through Ray Train (``tuning.distributed``) and the
deployed Predictor is scored on the whole validation part by Ray Data batch inference
(:mod:`~automl.streaming.evaluate`). The orchestration is :mod:`automl.streaming.run`.
"""
