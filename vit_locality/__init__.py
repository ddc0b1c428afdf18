"""vit-locality: train ViTs from scratch and measure attention locality (MAD, entropy).

Importing the package sets TensorFlow's environment, which TensorFlow reads once, at its first
import, whichever module makes it (the tf.data input, tfds, or TensorBoard's event writer) and
whichever command runs (train, analyze, sweep, report, scripts, benchmarks, tests):

- `TF_ENABLE_ONEDNN_OPTS=0`: oneDNN's custom operations off. TensorFlow turns them on by itself on
  CPUs with AVX512_BF16, where they change results with the CPU model and print two lines at
  import that the log level cannot silence. Always set: results must not depend on the CPU.
- `TF_CPP_MIN_LOG_LEVEL=2` unless set: TensorFlow's C++ log shows errors only.
"""

import os

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
