"""mtnet_plugin: Multi-Temporal Networks for video action recognition.

Reference:
    A. Stergiou and R. Poppe, "Multi-Temporal Convolutions for Human Action Recognition in Videos",
    IJCNN 2021.

Importing this package is cheap and never imports PySlowFast. Sub-packages, bottom to top:
``ops`` -> ``layers`` -> ``models`` -> ``config`` / ``data`` / ``engine``.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # Lazy, so that ``import mtnet_plugin`` stays cheap: ``mtnet_plugin.predict`` loads the runtime on first use.
    if name == "predict":
        from .engine.predict import predict

        return predict
    raise AttributeError(f"module 'mtnet_plugin' has no attribute {name!r}")
