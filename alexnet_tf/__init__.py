"""The library under the scripts: AlexNet's network, the dataset layouts, the input pipelines, the training recipe,
the run folder and its config. Importing the package first makes TensorFlow's start-up quiet (`startup`), whichever
of its modules a program imports.

docs/development.md's layout table says which module owns what, and what it may import.
"""

from alexnet_tf import startup  # noqa: F401  (first: TensorFlow loads quietly)
