"""Records: raw input parsed into typed features, and features encoded as the model's tf.train.Example."""
