"""`twingan serve CHECKPOINT [--index INDEX]`: the web demo (translate a selfie, search similar faces)."""
from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
from pathlib import Path

from twingan.errors import ConfigError

LOOPBACK_NAMES = ("localhost",)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        description="Starts a Gradio page on HOST:PORT (loopback by default). Translate: upload a photo or take "
        "one with the webcam, choose the target domain; the page shows the detected faces, the avatars, the "
        "side-by-side and the paste-back, each downloadable. Search (with --index): the most similar faces of "
        "a domain. Runs offline; uploads are checked by content and size, requests queue.",
    )
    parser.add_argument("checkpoint", type=Path, help="a twingan checkpoint (.safetensors)")
    parser.add_argument("--index", type=Path, default=None,
                        help="a similar-face index made from this checkpoint's embeddings (`twingan index build`); "
                        "enables the Search tab")
    parser.add_argument("--gallery-root", type=Path, default=None, metavar="DIR",
                        help="folder that relative image paths in the index are relative to (default: the current folder)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--device", default="auto", help="torch device: auto (default: CUDA when available), cpu, cuda:1")
    parser.add_argument("--weights", choices=("ema", "model"), default="ema",
                        help="the checkpoint's EMA generator (default) or its raw training weights")
    parser.add_argument("--max-upload-mb", type=float, default=10.0, help="largest upload accepted (default 10 MB)")
    parser.add_argument("--max-pixels", type=int, default=25_000_000,
                        help="largest picture accepted, in pixels, checked before decoding (default 25000000)")
    parser.add_argument("--max-faces", type=int, default=4, metavar="K",
                        help="translate at most the K largest faces of a photo (default 4)")
    parser.add_argument("--min-face-size", type=int, default=20, metavar="PX",
                        help="smallest face the detector looks for, in photo pixels (default 20)")
    parser.add_argument("--concurrency", type=int, default=1,
                        help="requests that run the model at the same time (default 1); others wait in the queue")
    parser.add_argument("--queue-size", type=int, default=16,
                        help="requests that may wait; more are turned away as 'queue full' (default 16)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {args.port}")
    if args.max_upload_mb <= 0:
        raise ConfigError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    try:
        from twingan.web.app import build_app, launch
    except ModuleNotFoundError as exc:
        if exc.name != "gradio":
            raise
        raise ConfigError('the web demo needs Gradio: pip install "twingan[web]"') from exc
    from twingan.faces import FaceDetector
    from twingan.inference import Translator
    from twingan.search import Index
    from twingan.web import WebDemo, WebLimits

    limits = WebLimits(
        max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels, max_faces=args.max_faces,
        concurrency=args.concurrency, queue_size=args.queue_size,
    )
    translator = Translator.load(args.checkpoint, device=args.device, weights=args.weights)
    index = Index.load(args.index, device="cpu") if args.index is not None else None
    detector = FaceDetector(device=translator.device, min_face_size=args.min_face_size)
    demo = WebDemo(translator, index, detector=detector, limits=limits, gallery_root=args.gallery_root)
    try:
        page = build_app(demo)
        if not _is_loopback(args.host):
            print(f"note: listening on {args.host}: anyone who can reach this machine can use the demo",
                  file=sys.stderr)
        print(f"twingan serve: {demo.describe()}", file=sys.stderr)
        signal.signal(signal.SIGTERM, _stop)
        try:
            launch(page, demo, args.host, args.port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {args.host}:{args.port} ({exc}); choose another --port") from exc
    finally:
        demo.close()
    return 0


def _stop(signum: int, frame: object) -> None:
    """SIGTERM ends the server like Ctrl-C: Gradio closes it and the scratch folder is removed."""
    raise KeyboardInterrupt


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
