"""dfcore: all the logic of the deepfake-detection study; the notebooks only call it and plot."""

__version__ = "0.1.0"

# The one label mapping of the whole study. Never derive labels from folder order.
LABELS = {"real": 0, "fake": 1}
CLASS_NAMES = ["real", "fake"]
