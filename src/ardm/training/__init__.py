"""Training a model (:mod:`~ardm.training.train`), its checkpoints, and the shipped weights
(:mod:`~ardm.training.pretrained`: ``load_model`` by name or path, ``export_weights``)."""
