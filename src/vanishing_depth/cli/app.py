"""``vanishing-depth app``: the Vanishing Depth Analyzer, a local web page (`vanishing_depth.app`, Gradio)."""

from __future__ import annotations

import argparse


def _yes_no(value: str) -> bool:
    answers = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    if value.lower() not in answers:
        raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
    return answers[value.lower()]


def add_app_subcommand(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "app",
        help="Serve the Vanishing Depth Analyzer web app (needs `pip install -e '.[app]'`).",
        description="A local web page to look at a trained completion model: upload an RGB image and its depth map "
        "(or pick a bundled frame), remove depth with a sensor pattern, complete it, and see the errors in metres, "
        "the PCA maps of the fusion layers and a point cloud. The main action is also the API endpoint /complete.",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="A folder with a trained decoder: RUN/pretraining or a depth head (an encoder folder is refused), or a "
        "Hub id. Default: the demo model outputs/vanishing-depth-demo/pretraining written by `make demo`.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1: this machine only; 0.0.0.0: all)."
    )
    parser.add_argument("--port", type=int, default=7860, help="Port to serve on (default 7860).")
    parser.add_argument(
        "--share",
        type=_yes_no,
        default=False,
        metavar="{true,false}",
        help="Also open a public gradio.live link (default false: local only).",
    )
    parser.set_defaults(func=run_app)
    return parser


def run_app(args: argparse.Namespace) -> int:
    # Gradio is the optional `app` extra: imported here, when the command runs, not when the CLI starts.
    try:
        from ..app import launch_app, resolve_model_dir
    except ImportError as error:
        raise ValueError(
            f"the app needs Gradio ({error}); install it with `pip install -e '.[app]'` (or `pip install "
            "'vanishing-depth[app]'`)."
        ) from None
    model = resolve_model_dir(args.model)
    print(f"Vanishing Depth Analyzer: model {model}, http://{args.host}:{args.port} (Ctrl+C stops it)")
    launch_app(model, host=args.host, port=args.port, share=args.share)
    return 0
