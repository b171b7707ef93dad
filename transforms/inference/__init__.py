"""Inference: model signatures and staging, the model handlers around RunInference, and the five patterns."""
