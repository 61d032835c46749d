"""The Vanishing Depth Analyzer as a Hugging Face Space (or any machine) starts it: ``python app.py``.

The model is ``$VANISHING_DEPTH_MODEL``: a folder with a trained decoder (``RUN/pretraining`` or a depth head) or a
Hub model id; unset, the demo model ``outputs/vanishing-depth-demo/pretraining`` that ``make demo`` writes.
The address is Gradio's own ``$GRADIO_SERVER_NAME`` / ``$GRADIO_SERVER_PORT`` (a Space sets ``0.0.0.0`` / 7860);
unset, ``127.0.0.1:7860``. To make a Space: copy this file and ``space/requirements.txt`` to the Space repository's
root and set the variable ``VANISHING_DEPTH_MODEL`` in its settings (see ``space/README.md``).
Locally, ``vanishing-depth app`` does the same with command-line options.
"""

import os
import sys

from vanishing_depth.app import launch_app

if __name__ == "__main__":
    try:
        launch_app(
            os.environ.get("VANISHING_DEPTH_MODEL") or None,
            host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
            port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
        )
    except (ValueError, FileNotFoundError) as error:
        sys.exit(f"error: {error}")
