"""Assertions shared by the end-to-end tests."""


def assert_close(actual: float, expected: float) -> None:
    """Within the demo models' accuracy: |y - kx| <= 0.01 |x| + 0.05, for y = kx."""
    assert abs(actual - expected) <= 0.01 * abs(expected) + 0.05, (actual, expected)
