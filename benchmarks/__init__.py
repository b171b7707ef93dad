"""The benchmark: this project's patterns against the model's own limit, Beam's floor and the naive DoFn."""
