"""mtnet_plugin: Multi-Temporal Networks for video action recognition.

Reference:
    A. Stergiou and R. Poppe, "Multi-Temporal Convolutions for Human Action Recognition in Videos",
    IJCNN 2021.

Importing this package is cheap and never imports PySlowFast. Sub-packages, bottom to top:
``ops`` -> ``layers`` -> ``models`` -> ``config`` / ``data`` / ``engine``.
"""

__version__ = "0.1.0"
